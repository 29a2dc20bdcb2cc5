"""Model registry: every model gives (B, C) logits; the CIFAR ResNets have He et al.'s sizes."""

from __future__ import annotations

import pytest
import torch

from dm_core.models import MODELS, create_model
from dm_core.registry import ConfigError

SHAPES = {"mlp": [(1, 8, 8), (20,), (3, 32, 32)], "cnn": [(1, 8, 8), (1, 28, 28), (3, 32, 32)],
          "torchvision": [(3, 32, 32), (1, 32, 32)]}


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_gives_logits(name):
    shapes = SHAPES.get(name, [(3, 32, 32), (1, 28, 28)])
    for shape in shapes:
        model = create_model(name, 7, shape)
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(2, *shape))
        assert out.shape == (2, 7)
        assert torch.isfinite(out).all()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_resnet_sizes_match_he_et_al():
    # He et al. 2016, Table 6: ResNet-20 0.27M, ResNet-32 0.46M, ResNet-44 0.66M,
    # ResNet-56 0.85M, ResNet-110 1.7M parameters.
    for depth, millions in ((20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7)):
        got = n_params(create_model(f"resnet{depth}", 10, (3, 32, 32))) / 1e6
        assert abs(got - millions) / millions < 0.03, (depth, got)


def test_mlp_layers_and_dropout():
    model = create_model("mlp", 10, (64,), hidden=[16, 8], dropout=0.5, batch_norm=True)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 16), (16, 8), (8, 10)]
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())


def test_errors_name_the_field():
    with pytest.raises(ConfigError, match="mlp"):
        create_model("transformer", 10, (8,))
    with pytest.raises(ConfigError, match="model.dropout"):
        create_model("mlp", 10, (8,), dropout=1.5)
    with pytest.raises(ConfigError, match="use mlp"):
        create_model("resnet20", 10, (64,))
    with pytest.raises(ConfigError, match="model.arch"):
        create_model("torchvision", 10, (3, 32, 32), arch="not_a_model")
