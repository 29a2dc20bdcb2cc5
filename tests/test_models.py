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


# -- torchvision models: checked against torchvision's own list, at config time and before
# -- training starts, never a traceback from inside torch ------------------------------------

def _torchvision_config(**model):
    from dm_core.config import parse_config

    return parse_config({"dataset": {"name": "digits"}, "model": {"name": "torchvision", **model}})


def test_torchvision_arch_is_checked_against_torchvisions_classification_list():
    import torchvision

    classification = set(torchvision.models.list_models(module=torchvision.models))
    every = set(torchvision.models.list_models())  # also detection, segmentation, video, ...
    for arch in sorted(classification):
        assert _torchvision_config(arch=arch).model.params()["arch"] == arch
    for arch in ("resnet9000", *sorted(every - classification)[:3]):
        with pytest.raises(ConfigError) as err:
            _torchvision_config(arch=arch)
        assert str(err.value).startswith("model.arch: unknown torchvision classification model")
        assert "resnet18" in str(err.value)  # the allowed names are listed


@pytest.mark.parametrize(("arch", "key", "allowed"), [
    ("resnet18", "dropout", "zero_init_residual"),  # ResNet has no dropout
    ("resnet18", "num_classes", "zero_init_residual"),  # the dataset sets it
    ("mobilenet_v3_small", "colour", "width_mult"),  # MobileNetV3 swallows unknown kwargs
    ("convnext_tiny", "typo", "stochastic_depth_prob"),  # so does ConvNeXt
    ("resnet18", "norm_layer", "groups"),  # a callable: a config cannot give one
])
def test_torchvision_keys_the_model_does_not_take_are_rejected(arch, key, allowed):
    with pytest.raises(ConfigError) as err:
        _torchvision_config(arch=arch, **{key: 1})
    assert str(err.value).startswith(f"model.{key}:")
    assert allowed in str(err.value)


def test_torchvision_keys_reach_the_model():
    # Reference: torchvision's own builder with the same argument.
    import torchvision

    cfg = _torchvision_config(arch="mobilenet_v3_small", width_mult=0.5, dropout=0.1)
    ours = create_model("torchvision", 10, (3, 32, 32), **cfg.model.params())
    theirs = torchvision.models.mobilenet_v3_small(num_classes=10, width_mult=0.5, dropout=0.1)
    assert n_params(ours) == n_params(theirs) < n_params(torchvision.models.mobilenet_v3_small(num_classes=10))
    assert ours[0].classifier[2].p == 0.1


def test_torchvision_build_failures_name_the_field():
    with pytest.raises(ConfigError) as err:  # torchvision raises ValueError for this
        create_model("torchvision", 10, (3, 32, 32), arch="resnet18", replace_stride_with_dilation=[True])
    assert str(err.value).startswith("model.replace_stride_with_dilation: torchvision model 'resnet18' "
                                     "cannot be built with replace_stride_with_dilation=[True]")
    with pytest.raises(ConfigError, match=r"^model\.groups: .*expected value 32 but got 4"):
        create_model("torchvision", 10, (3, 32, 32), arch="resnext50_32x4d", groups=4)


def test_an_input_the_model_cannot_take_is_a_config_error():
    # SqueezeNet's pooling needs more than 8×8 pixels: torch raises a RuntimeError.
    with pytest.raises(ConfigError) as err:
        create_model("torchvision", 10, (1, 8, 8), arch="squeezenet1_1")
    message = str(err.value)
    assert message.startswith("model.arch: torchvision model 'squeezenet1_1' cannot take this "
                              "dataset's inputs of shape (1, 8, 8)")
    assert "Output size is too small" in message and "\n" not in message
    # On 32×32 the same model works.
    assert create_model("torchvision", 10, (3, 32, 32), arch="squeezenet1_1")(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_the_dummy_forward_leaves_no_trace():
    # No random draws and no batch-norm statistics: a model comes out as torch built it.
    torch.manual_seed(0)
    model = create_model("cnn", 10, (1, 8, 8), dropout=0.5)
    after = torch.rand(1)
    torch.manual_seed(0)
    from dm_core.models import SmallCNN

    reference = SmallCNN(1, 10, 32, 0.5)
    assert torch.equal(after, torch.rand(1))
    assert model.training
    ours, theirs = model.state_dict(), reference.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_googlenet_trains_on_its_main_logits():
    model = create_model("torchvision", 10, (3, 64, 64), arch="googlenet", init_weights=False)
    model.train()
    out = model(torch.randn(2, 3, 64, 64))  # torchvision gives (logits, aux2, aux1) in training
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
