"""datareduce.models: our CIFAR-stem variants, resnet20, torchvision names, weights never downloaded."""
import pytest
import torch

from datareduce.models import get_model, list_models


@pytest.mark.parametrize("name", ["resnet20", "resnet18_cifar", "mobilenet_v2_cifar"])
def test_cifar_models_classify_32px(name):
    torch.manual_seed(0)
    model = get_model(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_resnet50_cifar_has_cifar_stem():
    model = get_model("resnet50_cifar", num_classes=100)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.fc.out_features == 100


def test_cifar_stem_keeps_resolution():
    """The point of the CIFAR stem: a 32x32 image reaches the last stage at 4x4, not 1x1."""
    feats = {}
    model = get_model("resnet18_cifar", num_classes=10).eval()
    model.layer4.register_forward_hook(lambda m, i, o: feats.update(r18=o.shape))
    mb = get_model("mobilenet_v2_cifar", num_classes=10).eval()
    mb.features.register_forward_hook(lambda m, i, o: feats.update(mb=o.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
        mb(torch.randn(1, 3, 32, 32))
    assert feats["r18"][-2:] == (4, 4)
    assert feats["mb"][-2:] == (4, 4)


def test_resnet20_is_small():
    n = sum(p.numel() for p in get_model("resnet20", num_classes=10).parameters())
    assert 0.25e6 < n < 0.3e6  # He et al.: 0.27 M


def test_torchvision_name():
    model = get_model("resnet18", num_classes=3)
    assert model.fc.out_features == 3
    assert "resnet18" in list_models() and "resnet20" in list_models()


def test_unknown_model_suggests():
    with pytest.raises(ValueError, match="unknown model 'resnet9000'.*resnet"):
        get_model("resnet9000", num_classes=10)
    with pytest.raises(ValueError, match="Did you mean"):
        get_model("resnet_20", num_classes=10)


def test_weights_file_roundtrip(tmp_path):
    torch.manual_seed(1)
    a = get_model("resnet20", num_classes=10)
    torch.save({"model": a.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    b = get_model("resnet20", num_classes=10, weights=str(tmp_path / "ckpt.pth"))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_missing_weights_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        get_model("resnet20", num_classes=10, weights=str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="not found"):
        get_model("resnet18", num_classes=10, weights=str(tmp_path / "nope.pth"))


def test_torchvision_weights_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="Nothing is downloaded"):
        get_model("resnet18", num_classes=10, weights="ResNet18_Weights.IMAGENET1K_V1")
    with pytest.raises(ValueError, match="neither a file"):
        get_model("resnet18", num_classes=10, weights="NoSuchWeights")


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        get_model("resnet20", num_classes=0)
