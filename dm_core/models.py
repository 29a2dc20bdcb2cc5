"""Models: MLP, a small CNN, the CIFAR ResNets of He et al. (2016), torchvision models.

Their names and parameters are registered in ``dm_core.registries`` (``MODELS``, readable
without torch); the builders here are the factories those entries name.

>>> import torch
>>> model = create_model("mlp", 10, (1, 8, 8), hidden=[32])
>>> model(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import re
import types
import typing
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dm_core.registries import MODELS
from dm_core.registry import ConfigError

# ---------------------------------------------------------------------- MLP

class MLP(nn.Module):
    """Flatten, then ``Linear → [BatchNorm] → ReLU → [Dropout]`` per hidden layer."""

    def __init__(self, in_features: int, num_classes: int, hidden: list[int], dropout: float,
                 batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if batch_norm:
                layers.append(nn.BatchNorm1d(h))
            layers.append(nn.ReLU(inplace=True))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _mlp(num_classes: int, input_shape: tuple[int, ...], hidden: list[int], dropout: float,
         batch_norm: bool) -> nn.Module:
    return MLP(math.prod(input_shape), num_classes, list(hidden), dropout, batch_norm)


# ---------------------------------------------------------------------- small CNN

class SmallCNN(nn.Module):
    """Two conv blocks (conv-BN-ReLU ×2, max-pool) and a linear head with global pooling,
    so it takes 8×8 digits, 28×28 MNIST and 32×32 CIFAR alike."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, dropout: float) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.MaxPool2d(2))

        self.features = nn.Sequential(block(in_channels, channels), block(channels, 2 * channels))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(2 * channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _image_channels(input_shape: tuple[int, ...], model: str) -> int:
    if len(input_shape) == 2:
        return 1
    if len(input_shape) == 3:
        return input_shape[0]
    raise ConfigError(f"model.name: {model!r} needs images (C, H, W); this dataset gives "
                      f"feature vectors of shape {input_shape}; use mlp")


def _cnn(num_classes: int, input_shape: tuple[int, ...], channels: int, dropout: float) -> nn.Module:
    return SmallCNN(_image_channels(input_shape, "cnn"), num_classes, channels, dropout)


# ---------------------------------------------------------------------- CIFAR ResNets

class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = cout - cin
        self.stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # Option A of He et al.: subsample and zero-pad channels, no extra parameters, which is
        # what gives ResNet-20 its 0.27M parameters.
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """The 6n+2-layer CIFAR ResNet (He et al. 2016, §4.2): 3 stages of 16/32/64 channels."""

    def __init__(self, depth: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 2) % 6:
            raise ConfigError(f"model.name: ResNet depth {depth} is not of the form 6n+2")
        n = (depth - 2) // 6
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        cin = 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(n):
                blocks.append(_BasicBlock(cin, cout, 2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _resnet(depth: int, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    return CifarResNet(depth, _image_channels(input_shape, f"resnet{depth}"), num_classes)


# ---------------------------------------------------------------------- torchvision

@functools.lru_cache(maxsize=1)
def torchvision_archs() -> tuple[str, ...]:
    """torchvision's classification models (``torchvision.models.list_models``), sorted.

    Detection, segmentation, video and quantised models live in submodules and are not listed.
    """
    import torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


_JSON_TYPES = (int, float, bool, str, type(None))


def _settable(annotation: Any) -> bool:
    """Whether a config value (JSON: numbers, booleans, strings, lists) can fill a parameter
    annotated ``annotation``; callables, module classes and config objects cannot."""
    if annotation in _JSON_TYPES:
        return True
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, collections.abc.Sequence, typing.Union, types.UnionType):
        return all(_settable(a) for a in typing.get_args(annotation) if a is not Ellipsis)
    return False


@functools.cache
def torchvision_params(arch: str) -> tuple[str, ...]:
    """The keyword arguments a config may give torchvision model ``arch``.

    These are the settable (number, boolean, string or list) parameters of the model class
    that ``arch``'s builder returns: those with a default, and the required ones that the
    builders of its module take from their keyword arguments (``kwargs.pop("image_size", 224)``
    in the ViT builder); plus the defaulted parameters of the module's ``_*_conf`` helper that
    some builders pass their keyword arguments through (MobileNetV3's ``width_mult``). Never
    ``num_classes``: the dataset sets it. A value the builder fixes itself (``groups`` of a
    ResNeXt) still fails when the model is built, as a ``ConfigError`` naming it.

    >>> torchvision_params("resnet18")
    ('zero_init_residual', 'groups', 'width_per_group', 'replace_stride_with_dilation')
    >>> torchvision_params("vit_b_16")[:2]
    ('image_size', 'dropout')
    """
    import torchvision

    builder = torchvision.models.get_model_builder(arch)
    module = inspect.getmodule(builder)
    popped = set(re.findall(r"kwargs\.pop\(\s*[\"'](\w+)[\"']", inspect.getsource(module)))
    cls = inspect.signature(builder).return_annotation
    functions = [cls.__init__] + [fn for name, fn in vars(module).items()
                                  if name.startswith("_") and name.endswith("_conf") and callable(fn)]
    names: list[str] = []
    for fn in functions:
        hints = typing.get_type_hints(fn)
        for prm in inspect.signature(fn).parameters.values():
            if (prm.kind in (prm.POSITIONAL_OR_KEYWORD, prm.KEYWORD_ONLY)
                    and (prm.default is not prm.empty or prm.name in popped)
                    and prm.name not in ("self", "arch", "num_classes", *names)
                    and _settable(hints.get(prm.name, Any))):
                names.append(prm.name)
    return tuple(names)


def _check_torchvision(params: dict[str, Any], where: str = "model") -> dict[str, Any]:
    """Config-time check: a known ``arch`` and only keyword arguments that model takes."""
    arch = params["arch"]
    available = torchvision_archs()
    if arch not in available:
        raise ConfigError(f"{where}.arch: unknown torchvision classification model {arch!r}; "
                          f"allowed: {', '.join(available)}")
    if params.get("weights") not in (None, False):
        raise ConfigError(f"{where}.weights: pretrained weights cannot be downloaded here; leave weights unset")
    allowed = torchvision_params(arch)
    for key in params:
        if key in ("arch", "weights") or key in allowed:
            continue
        why = "is set from the dataset's classes" if key == "num_classes" else f"is not a parameter of {arch!r}"
        raise ConfigError(f"{where}.{key}: {why}; {arch} takes: {', '.join(allowed) or 'no parameters'}")
    return params


def _torchvision(num_classes: int, input_shape: tuple[int, ...], arch: str, **kwargs: Any) -> nn.Module:
    import torchvision

    kwargs.pop("weights", None)
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    channels = _image_channels(input_shape, arch)
    layers: list[nn.Module] = [model, _MainLogits()]
    if channels != 3:  # ImageNet models expect RGB: repeat a grey channel
        layers.insert(0, _RepeatChannels(3))
    return nn.Sequential(*layers)


class _RepeatChannels(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x


class _MainLogits(nn.Module):
    """GoogLeNet and Inception return ``(logits, aux_logits)`` while training: keep the logits."""

    def forward(self, out: Any) -> torch.Tensor:
        return out if isinstance(out, torch.Tensor) else out.logits


# ---------------------------------------------------------------------- building

def create_model(name: str, num_classes: int, input_shape: tuple[int, ...], **params: Any) -> nn.Module:
    """Build a registered model for ``num_classes`` outputs and inputs of ``input_shape``.

    The model is tried on a dummy batch of that shape before it is returned, so a model
    that cannot be built with these parameters, or cannot take these inputs (an ImageNet
    model on images smaller than its pooling needs), is a ``ConfigError`` naming the
    ``model.*`` field at fault -- before training starts, not a traceback from inside torch.

    >>> create_model("torchvision", 10, (3, 32, 32), arch="inception_v3", init_weights=False)
    Traceback (most recent call last):
    ...
    dm_core.registry.ConfigError: model.arch: torchvision model 'inception_v3' cannot take this dataset's inputs of shape (3, 32, 32): Calculated padded input size per channel: (1 x 1). Kernel size: (3 x 3). Kernel size can't be greater than actual input size; choose another model
    """
    entry = MODELS.get(name, where="model.name")
    checked = MODELS.validate_params(name, {k: v for k, v in params.items() if v is not None},
                                     where="model")
    if "check_params" in entry.extra:
        checked = entry.extra["check_params"](checked, "model")
    what = f"torchvision model {checked['arch']!r}" if "arch" in checked else f"model {name!r}"
    shape = tuple(input_shape)
    try:
        model = entry.factory(num_classes, shape, **checked)
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure inside torch becomes a named config error
        field = _field_in(err, checked) or ("arch" if "arch" in checked else "name")
        raise ConfigError(f"model.{field}: {what} cannot be built with "
                          f"{_kwargs_text(checked)}: {_first_line(err)}") from err
    _try_forward(model, num_classes, shape, what, "model.arch" if "arch" in checked else "model.name")
    return model


def _try_forward(model: nn.Module, num_classes: int, shape: tuple[int, ...], what: str, field: str) -> None:
    # Eval mode and zeros: no dropout, no random draws and no batch-norm statistics change,
    # so the model trains exactly as it would have without the check.
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *shape))
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"{field}: {what} cannot take this dataset's inputs of shape {shape}: "
                          f"{_first_line(err)}; choose another model") from err
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{field}: {what} gives outputs of shape {got} for a batch of 2, "
                          f"not (2, {num_classes}) logits")


def _field_in(err: Exception, params: dict[str, Any]) -> str | None:
    """The parameter an error message quotes (``unexpected keyword argument 'x'``), if any."""
    text = str(err)
    return next((k for k in params if k != "arch" and re.search(rf"\b{re.escape(k)}\b", text)), None)


def _kwargs_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "arch") or "no parameters"


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[0] if lines else type(err).__name__
