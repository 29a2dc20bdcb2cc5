"""Model registry: MLP, a small CNN, the CIFAR ResNets of He et al. (2016), torchvision models.

>>> import torch
>>> model = create_model("mlp", 10, (1, 8, 8), hidden=[32])
>>> model(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dm_core.registry import ConfigError, Param, Registry

MODELS = Registry("model")


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


@MODELS.register("mlp", description="Multi-layer perceptron on the flattened input.", params=[
    Param("hidden", [256, 256], "list[int]", 1, 65536, help="hidden layer widths"),
    Param("dropout", 0.0, "float", 0.0, 1.0, high_inclusive=False, help="dropout after each hidden layer"),
    Param("batch_norm", False, "bool", help="batch normalisation after each hidden layer"),
])
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


@MODELS.register("cnn", description="A small convolutional network for 8×8 to 32×32 images.", params=[
    Param("channels", 32, "int", 1, 1024, help="channels of the first block (doubled in the second)"),
    Param("dropout", 0.0, "float", 0.0, 1.0, high_inclusive=False, help="dropout before the head"),
])
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


def _register_resnet(depth: int) -> None:
    @MODELS.register(f"resnet{depth}", description=f"CIFAR ResNet-{depth} (He et al. 2016; 16/32/64 channels).")
    def _resnet(num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        return CifarResNet(depth, _image_channels(input_shape, f"resnet{depth}"), num_classes)


for _depth in (20, 32, 44, 56, 110):
    _register_resnet(_depth)


# ---------------------------------------------------------------------- torchvision

@MODELS.register("torchvision", open_params=True,
                 description="Any torchvision classification model by name (randomly initialised).",
                 params=[Param("arch", "resnet18", "str", help="torchvision model name, e.g. resnet18")])
def _torchvision(num_classes: int, input_shape: tuple[int, ...], arch: str, **kwargs: Any) -> nn.Module:
    import torchvision

    available = torchvision.models.list_models(module=torchvision.models)
    if arch not in available:
        raise ConfigError(f"model.arch: unknown torchvision model {arch!r}; allowed: {', '.join(sorted(available))}")
    if kwargs.get("weights") not in (None, False):
        raise ConfigError("model.weights: pretrained weights cannot be downloaded here; leave weights unset")
    kwargs.pop("weights", None)
    model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    channels = _image_channels(input_shape, arch)
    if channels != 3:  # ImageNet models expect RGB: repeat a grey channel
        return nn.Sequential(_RepeatChannels(3), model)
    return model


class _RepeatChannels(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, self.channels, -1, -1) if x.shape[1] == 1 else x


def create_model(name: str, num_classes: int, input_shape: tuple[int, ...], **params: Any) -> nn.Module:
    """Build a registered model for ``num_classes`` outputs and inputs of ``input_shape``."""
    checked = MODELS.validate_params(name, {k: v for k, v in params.items() if v is not None},
                                     where="model")
    return MODELS.get(name, where="model.name").factory(num_classes, tuple(input_shape), **checked)
