"""Feature extractors and the embedding cache (SPEC §2.1), on real CIFAR-10 images."""
import os

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset
from torchvision.datasets import ImageFolder

from datareduce.embed import build_extractor, cache_path, embed
from datareduce.manifest import dataset_fingerprint
from datareduce.models import get_model

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


@pytest.fixture(scope="module")
def train_set(cifar10_small):
    return ImageFolder(str(cifar10_small / "train"))


@pytest.fixture(scope="module")
def test_set(cifar10_small):
    return ImageFolder(str(cifar10_small / "test"))


@pytest.fixture(scope="module")
def paths(train_set):
    """20 image files, two of each class (ImageFolder sorts by class: 40 a class)."""
    return [train_set.samples[i][0] for i in range(0, 400, 20)]


@pytest.fixture(scope="module")
def lite64():
    return build_extractor("efficientnet-lite0", image_size=64)


def _ncm_accuracy(train_emb, train_y, test_emb, test_y):
    """Nearest-class-mean accuracy: how well the features separate the classes."""
    centroids = np.stack([train_emb[train_y == c].mean(0) for c in np.unique(train_y)])
    pred = ((test_emb[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((pred == test_y).mean())


def test_efficientnet_lite0_loads_offline_at_native_size(paths):
    ex = build_extractor("efficientnet-lite0")
    assert (ex.name, ex.dim, ex.image_size) == ("efficientnet-lite0", 1280, 224)
    assert "efficientnet-lite0-57934424.pth:sha256=57934424" in ex.key  # the packaged file, hashed
    first = embed(paths[:4], ex)
    assert first.shape == (4, 1280) and first.dtype == np.float32
    assert np.isfinite(first).all()
    assert all(not np.allclose(first[i], first[j]) for i in range(4) for j in range(i))
    assert embed(paths[:4], ex).tobytes() == first.tobytes()


def test_pretrained_features_separate_cifar_classes(train_set, test_set, lite64):
    """The packaged weights really are loaded and the normalisation fits them: pretrained features put
    CIFAR test images near their class mean far more often than a random init of the same network does."""
    train = Subset(train_set, list(range(0, len(train_set), 2)))  # 20 a class
    ytr, yte = np.array(train_set.targets)[::2], np.array(test_set.targets)
    pretrained = _ncm_accuracy(embed(train, lite64, batch_size=16), ytr, embed(test_set, lite64, batch_size=16), yte)
    rand = build_extractor("efficientnet-lite0", weights="random", image_size=64)
    assert rand.key != lite64.key
    random_acc = _ncm_accuracy(embed(train, rand, batch_size=16), ytr, embed(test_set, rand, batch_size=16), yte)
    assert pretrained >= 0.35, pretrained  # 10 classes: chance is 0.10; measured 0.49 (random init: 0.18)
    assert pretrained - random_acc >= 0.15, (pretrained, random_acc)


def test_cache_is_written_atomically_and_reused(tmp_path, paths, lite64):
    fp = dataset_fingerprint(paths)
    calls = []
    first = embed(paths, lite64, cache_dir=tmp_path, fingerprint=fp, batch_size=8,
                  progress=lambda d, t: calls.append((d, t)))
    path = cache_path(tmp_path, fp, lite64)
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, path.with_suffix(".json").name])
    assert calls == [(8, 20), (16, 20), (20, 20)]
    assert np.load(path).tobytes() == first.tobytes()

    calls.clear()
    second = embed(paths, lite64, cache_dir=tmp_path, fingerprint=fp, progress=lambda d, t: calls.append((d, t)))
    assert second.tobytes() == first.tobytes()
    assert calls == [(20, 20)]  # one call: nothing was embedded

    # The array really comes from the file: replace it, and embed returns the replacement.
    marker = np.full_like(first, 7.0)
    np.save(path, marker)
    assert embed(paths, lite64, cache_dir=tmp_path, fingerprint=fp).tobytes() == marker.tobytes()

    # A cache file of the wrong shape (e.g. a stale listing) is recomputed and overwritten.
    np.save(path, marker[:5])
    assert embed(paths, lite64, cache_dir=tmp_path, fingerprint=fp, batch_size=8).tobytes() == first.tobytes()
    assert np.load(path).tobytes() == first.tobytes()

    # Another dataset listing gets another file.
    other = dataset_fingerprint(paths[::-1])
    assert cache_path(tmp_path, other, lite64) != path


def test_image_size_is_part_of_the_key(tmp_path, paths, lite64):
    ex32 = build_extractor("efficientnet-lite0", image_size=32)
    assert ex32.key != lite64.key and ex32.image_size == 32
    fp = dataset_fingerprint(paths)
    a = embed(paths[:6], lite64, cache_dir=tmp_path, fingerprint=fp)
    b = embed(paths[:6], ex32, cache_dir=tmp_path, fingerprint=fp)
    assert cache_path(tmp_path, fp, lite64) != cache_path(tmp_path, fp, ex32)
    assert cache_path(tmp_path, fp, lite64).is_file() and cache_path(tmp_path, fp, ex32).is_file()
    assert a.shape == b.shape == (6, 1280) and not np.allclose(a, b)


def test_dataset_of_pil_label_pairs_equals_paths(train_set, paths, lite64):
    subset = Subset(train_set, list(range(0, 400, 20)))  # returns (PIL image, label)
    assert embed(subset, lite64, batch_size=7).tobytes() == embed(paths, lite64, batch_size=7).tobytes()


def test_torchvision_model_with_random_init(paths):
    ex = build_extractor("resnet18", weights=None, image_size=32)
    assert (ex.dim, ex.image_size) == (512, 32)
    assert "random-init" in ex.key
    feats = embed(paths[:8], ex)
    assert feats.shape == (8, 512) and np.isfinite(feats).all()
    # A random init is seeded: building it again gives the same weights, key and features.
    again = build_extractor("resnet18", image_size=32)
    assert again.key == ex.key
    assert embed(paths[:8], again).tobytes() == feats.tobytes()
    assert build_extractor("mobilenet_v2", image_size=32).dim == 1280


def test_missing_hub_weights_name_the_file_then_load_once_present(tmp_path, monkeypatch, paths):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(FileNotFoundError) as err:
        build_extractor("resnet18", weights="IMAGENET1K_V1")
    msg = str(err.value)
    assert str(expected) in msg and "efficientnet-lite0" in msg and "weights=None" in msg
    assert not expected.exists()  # nothing was downloaded
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        build_extractor("resnet18", weights="IMAGENET9K_V9")

    # Once the file is in the hub cache it is used (here: a seeded stand-in for the real weights).
    torch.manual_seed(1)
    reference = get_model("resnet18", num_classes=1000).eval()
    expected.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), expected)
    ex = build_extractor("resnet18", weights="DEFAULT", image_size=32)
    assert ex.dim == 512 and "ResNet18_Weights.IMAGENET1K_V1" in ex.key
    reference.fc = nn.Identity()
    batch = torch.stack([ex.transform(train_img) for train_img in map(_open, paths[:3])])
    with torch.inference_mode():
        torch.testing.assert_close(ex(batch), reference(batch))


def _open(path):
    from PIL import Image

    with Image.open(path) as img:
        return img.convert("RGB")


def test_unknown_model_name_lists_valid_ones():
    with pytest.raises(ValueError) as err:
        build_extractor("resnet81")
    assert "Did you mean" in str(err.value) and "resnet18" in str(err.value)
    assert "efficientnet-lite0" in str(err.value)


def test_checkpoint_file_with_architecture_name(tmp_path, paths):
    """A snapshot of the trained model saved as a checkpoint: any class count, DDP prefixes, both spellings."""
    torch.manual_seed(2)
    model = get_model("resnet18_cifar", num_classes=10).eval()
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 15}, ckpt)
    a = build_extractor(ckpt, arch="resnet18_cifar", mean=CIFAR_MEAN, std=CIFAR_STD)
    b = build_extractor("resnet18_cifar", weights=str(ckpt), mean=CIFAR_MEAN, std=CIFAR_STD)
    assert a.key == b.key and a.image_size == 32 and a.dim == 512
    model.fc = nn.Identity()
    batch = torch.stack([a.transform(img) for img in map(_open, paths[:4])])
    with torch.inference_mode():
        torch.testing.assert_close(a(batch), model(batch))
    assert embed(paths[:4], a).tobytes() == embed(paths[:4], b).tobytes()
    # Other weights in the file -> another key.
    with torch.no_grad():
        model.conv1.weight.add_(1.0)
    torch.save(model.state_dict(), ckpt)
    assert build_extractor(ckpt, arch="resnet18_cifar", mean=CIFAR_MEAN, std=CIFAR_STD).key != a.key
    with pytest.raises(ValueError, match="does not fit architecture"):
        build_extractor(ckpt, arch="resnet20")
    with pytest.raises(FileNotFoundError, match="not found"):
        build_extractor("resnet18", weights=str(tmp_path / "missing.pth"))


def test_module_snapshot(paths):
    """An nn.Module being trained (the paper's "ResNet18 (15)"): embedded in eval mode, left as it was."""
    torch.manual_seed(3)
    model = get_model("resnet20", num_classes=10)
    model.train()
    running = model.bn1.running_mean.clone()
    ex = build_extractor(model, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD, strip_head=True)
    assert ex.dim == 64 and isinstance(model.fc, nn.Linear)  # the caller's model keeps its head
    feats = embed(paths[:6], ex)
    assert feats.shape == (6, 64)
    # As is (no stripping): its output (the logits) flattened; eval mode only while embedding.
    logits_ex = build_extractor(model, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD)
    logits = embed(paths[:6], logits_ex)
    assert logits.shape == (6, 10) and model.training
    assert torch.equal(model.bn1.running_mean, running)  # eval mode: batch-norm statistics untouched
    batch = torch.stack([ex.transform(img) for img in map(_open, paths[:6])])
    model.eval()
    with torch.inference_mode():
        np.testing.assert_allclose(logits, model(batch).numpy(), rtol=1e-5, atol=1e-5)
    # The key follows the weights: one step of training gives another key (and cache entry).
    with torch.no_grad():
        model.fc.bias.add_(0.5)
    assert build_extractor(model, image_size=32, mean=CIFAR_MEAN, std=CIFAR_STD).key != logits_ex.key


def test_bad_inputs_are_refused(tmp_path, paths, lite64, train_set):
    with pytest.raises(ValueError, match="fingerprint"):
        embed(paths, lite64, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="image_size"):
        build_extractor("efficientnet-lite0", image_size=4)
    import torchvision.transforms as T

    tensors = ImageFolder(train_set.root, transform=T.ToTensor())
    with pytest.raises(TypeError, match="already a tensor"):
        embed(Subset(tensors, [0, 1]), lite64)
    assert not os.listdir(tmp_path)
