"""Classification models by name: every torchvision classification model, CIFAR-stem variants, ``resnet20``.

The paper trains ResNet18, ResNet50 and MobileNetV2 on CIFAR with the usual CIFAR stem (a 3×3 stride-1
first convolution and no max-pool, so a 32×32 image is not shrunk to 8×8 before the first stage); those are
``resnet18_cifar``, ``resnet50_cifar`` and ``mobilenet_v2_cifar``. ``resnet20`` is He et al.'s small CIFAR
ResNet (3 stages of 16/32/64 channels, 0.27 M parameters) that trains on a CPU in minutes. Everything else is
looked up in ``torchvision.models``.

Pretrained weights are never downloaded: ``weights`` is a local file (a state dict or a checkpoint holding
one under ``"model"``) or a torchvision weights name whose file is already in the torch hub cache.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ._validate import UsageError

__all__ = ["get_model", "list_models", "ResNet20"]


# ----------------------------------------------------------------------------------------------- resnet20
class _BasicBlockA(nn.Module):
    """The CIFAR ResNet basic block with the parameter-free "option A" shortcut (stride-2 subsample + zero pad)."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.pad:
            shortcut = x[:, :, :: self.stride, :: self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + shortcut)


class ResNet20(nn.Module):
    """ResNet-20 for 32×32 inputs (He et al. 2016, §4.2): 3 stages × 3 basic blocks, 16/32/64 channels."""

    def __init__(self, num_classes: int = 10, blocks_per_stage: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers: List[nn.Module] = []
        in_planes = 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(blocks_per_stage):
                layers.append(_BasicBlockA(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


# ----------------------------------------------------------------------------------------- CIFAR stems
def _resnet_cifar(arch: str) -> Callable[..., nn.Module]:
    def build(num_classes: int = 10) -> nn.Module:
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
        return model

    build.__doc__ = f"torchvision {arch} with a 3×3 stride-1 stem and no max-pool (CIFAR)."
    return build


def _mobilenet_v2_cifar(num_classes: int = 10) -> nn.Module:
    """torchvision mobilenet_v2 for 32×32 inputs: stride-1 stem and a stride-1 second stage.

    The usual CIFAR adaptation (as in kuangliu/pytorch-cifar): total stride 8 instead of 32, so the last
    feature map is 4×4. MobileNetV2 has no max-pool to drop.
    """
    model = torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
    model.features[0][0].stride = (1, 1)
    # features[2] is the first block of the 24-channel stage (t=6, c=24, n=2, s=2): make it stride 1.
    model.features[2].conv[1][0].stride = (1, 1)
    return model


_OURS: Dict[str, Callable[..., nn.Module]] = {
    "resnet20": ResNet20,
    "resnet18_cifar": _resnet_cifar("resnet18"),
    "resnet50_cifar": _resnet_cifar("resnet50"),
    "mobilenet_v2_cifar": _mobilenet_v2_cifar,
}


def list_models() -> List[str]:
    """Every name ``get_model`` accepts: ours first, then torchvision's classification models."""
    return sorted(_OURS) + sorted(torchvision.models.list_models(module=torchvision.models))


def _unknown(name: str) -> UsageError:
    names = list_models()
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UsageError(
        f"unknown model {name!r}.{hint} Choose one of: {', '.join(sorted(_OURS))} "
        f"or any torchvision classification model ({', '.join(names[len(_OURS):len(_OURS) + 6])}, …)."
    )


def _load_weights_file(model: nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise UsageError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    model.load_state_dict(state)


def _torchvision_weights(name: str, weights: str):
    """The torchvision weights enum for ``weights`` if its file is in the hub cache; else a clear error."""
    try:
        enum = torchvision.models.get_weight(weights)
    except (ValueError, KeyError, AttributeError) as exc:
        raise UsageError(
            f"weights {weights!r} for model {name!r} are neither a file on disk nor a torchvision weights name "
            f"(e.g. ResNet18_Weights.IMAGENET1K_V1)"
        ) from exc
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(enum.url)
    if not cached.exists():
        raise FileNotFoundError(
            f"torchvision weights {weights} are not on disk: expected {cached}. Nothing is downloaded; "
            f"copy the file there, or pass a local weights file, or train from scratch (no weights)."
        )
    return enum


def get_model(name: str, num_classes: int, weights: Optional[str] = None) -> nn.Module:
    """Build model ``name`` with a ``num_classes``-way classifier.

    ``weights``: None (random init), a path to a local weights file, or a torchvision weights name found in
    the torch hub cache. Raises ``UsageError`` (a ``ValueError``) for an unknown name, ``FileNotFoundError`` for
    missing weights.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    weights_path = Path(weights).expanduser() if weights else None
    if name in _OURS:
        model = _OURS[name](num_classes=num_classes)
        if weights_path is not None:
            if not weights_path.is_file():
                raise FileNotFoundError(f"weights file {weights_path} for model {name!r} not found")
            _load_weights_file(model, weights_path)
        return model
    if name not in torchvision.models.list_models(module=torchvision.models):
        raise _unknown(name)
    if weights_path is not None and weights_path.is_file():
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        _load_weights_file(model, weights_path)
        return model
    if weights:
        if os.sep in weights or weights.endswith((".pth", ".pt", ".bin")):
            raise FileNotFoundError(f"weights file {weights_path} for model {name!r} not found")
        enum = _torchvision_weights(name, weights)
        # Pretrained heads have the enum's class count; replace the head afterwards when it differs.
        n_pre = len(enum.meta.get("categories") or []) or num_classes
        model = torchvision.models.get_model(name, weights=enum, num_classes=n_pre)
        if n_pre != num_classes:
            _replace_head(model, num_classes)
        return model
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def _replace_head(model: nn.Module, num_classes: int) -> None:
    """Swap the last ``nn.Linear`` of a torchvision classifier for a fresh ``num_classes``-way one."""
    last_name, last = None, None
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            last_name, last = mod_name, mod
    if last is None:
        raise ValueError("cannot find the classifier's last Linear layer to resize")
    parent = model
    *path, leaf = last_name.split(".")
    for p in path:
        parent = getattr(parent, p)
    setattr(parent, leaf, nn.Linear(last.in_features, num_classes))
