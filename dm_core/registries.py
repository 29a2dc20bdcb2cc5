"""The registries of schemes, losses, models and datasets, readable without torch.

Config validation (``dm_core.config``), ``dm submit`` and the dashboard's forms read what each
registered entry is called, what it does, its equation, its parameters with their ranges and
defaults, and anything else front ends read (a loss's family, a dataset's class count) from
here, without importing torch (about 7 s and 700 MB); training imports it anyway.

Where each kind is declared, once:

- **schemes** in ``dm_core.schemes``, each family by a decorator on the function holding its
  math: that module imports torch only when a tensor reaches the math, so ``SCHEMES`` is
  simply re-exported here.
- **losses** in ``dm_core.loss_formulas``, which loads without torch in the same way: each
  baseline (and co-teaching) by a decorator on the function holding its formula, and the
  scheme losses generated from their scheme families, whose parameters they take. The
  ``nn.Module`` classes of ``dm_core.losses`` call those functions, name their record with
  ``@_declared("name")`` (which gives them its defaults and ranges), and ``build_loss``
  builds every entry. ``LOSSES`` and ``MARGIN_CAP`` are re-exported here.
- **models** and **datasets** here, built by factories in ``models.py`` and ``data.py``,
  named by a ``LazyFactory`` that imports them on the first ``create``.

Extra fields the front ends read: a scheme's ``beta_span`` (its log-weight spans at most
``|β| × beta_span`` over p in [0, 1], whatever its other parameters: ``studio.submission``
clears most β values with it without building the scheme); a loss's ``family``, ``scheme``,
``normalise``, ``clip_grad_norm``, ``two_networks``, ``per_example_state``; a model's
``open_params`` and ``check_params``; a dataset's ``num_classes`` and ``num_train``.

>>> SCHEMES.names()
['dm', 'normal', 'exponential', 'beta', 'cce', 'mae', 'mse', 'gce']
>>> LOSSES.get("dm").extra["scheme"], LOSSES.get("dm").defaults()
('dm', {'lam': 0.5, 'beta': 8.0, 'eps': 1e-06})
>>> MODELS.names()[:3], DATASETS.get("cifar10").extra["num_classes"]
(['mlp', 'cnn', 'resnet20'], 10)
"""

from __future__ import annotations

from dm_core.loss_formulas import LOSSES, MARGIN_CAP
from dm_core.registry import Param, Registry, lazy
from dm_core.schemes import SCHEMES

__all__ = ["DATASETS", "LOSSES", "MARGIN_CAP", "MODELS", "SCHEMES"]

MODELS = Registry("model")
DATASETS = Registry("dataset")


# ---------------------------------------------------------------------- models (dm_core.models)

MODELS.register("mlp", description="Multi-layer perceptron on the flattened input.", params=[
    Param("hidden", [256, 256], "list[int]", 1, 65536, help="hidden layer widths"),
    Param("dropout", 0.0, "float", 0.0, 1.0, high_inclusive=False, help="dropout after each hidden layer"),
    Param("batch_norm", False, "bool", help="batch normalisation after each hidden layer"),
])(lazy("dm_core.models:_mlp"))

MODELS.register("cnn", description="A small convolutional network for 8×8 to 32×32 images.", params=[
    Param("channels", 32, "int", 1, 1024, help="channels of the first block (doubled in the second)"),
    Param("dropout", 0.0, "float", 0.0, 1.0, high_inclusive=False, help="dropout before the head"),
])(lazy("dm_core.models:_cnn"))

for _depth in (20, 32, 44, 56, 110):
    MODELS.register(f"resnet{_depth}", description=f"CIFAR ResNet-{_depth} (He et al. 2016; 16/32/64 channels).",
                    )(lazy("dm_core.models:_resnet", _depth))

# Its parameters are torchvision's own: checked by torchvision's signatures (which needs torch),
# only for a config that picks this model.
MODELS.register("torchvision", open_params=True,
                check_params=lazy("dm_core.models:_check_torchvision"),
                description="Any torchvision classification model by name (randomly initialised).",
                params=[Param("arch", "resnet18", "str", help="torchvision model name, e.g. resnet18")],
                )(lazy("dm_core.models:_torchvision"))


# ---------------------------------------------------------------------- datasets (dm_core.data)

_ROOT = Param("root", "./data", "str", help="folder holding the dataset files")
_DOWNLOAD = Param("download", False, "bool", help="download into root if missing (needs internet)")

DATASETS.register("digits", description="scikit-learn's bundled 8×8 handwritten digits "
                  "(1,797 images, 10 classes; 1,297 train / 500 test). Needs no network.",
                  num_classes=10, num_train=1297)(lazy("dm_core.data:_digits"))
DATASETS.register("digits_binary", params=[
    Param("positive", [0, 2, 4, 6, 8], "list[int]", 0, 9, help="digits labelled positive (1); the rest are 0"),
], description="Binary digits: the chosen digits (default even) against the rest, for imbalance "
               "studies like the paper's IMDB one (subsample class 0 with imbalance noise).",
   num_classes=2, num_train=1297)(lazy("dm_core.data:_digits_binary"))
DATASETS.register("mnist", params=[_ROOT, _DOWNLOAD],
                  description="MNIST handwritten digits (28×28, 60k/10k) from a torchvision folder.",
                  num_classes=10, num_train=60000)(lazy("dm_core.data:_mnist_like", "MNIST", "MNIST"))
DATASETS.register("fashion_mnist", params=[_ROOT, _DOWNLOAD],
                  description="Fashion-MNIST (28×28, 60k/10k) from a torchvision folder.",
                  num_classes=10, num_train=60000,
                  )(lazy("dm_core.data:_mnist_like", "FashionMNIST", "Fashion-MNIST"))
DATASETS.register("cifar10", params=[_ROOT, _DOWNLOAD],
                  description="CIFAR-10 (32×32 colour, 50k/10k) from a torchvision folder.",
                  num_classes=10, num_train=50000)(lazy("dm_core.data:_cifar10"))
DATASETS.register("cifar100", params=[_ROOT, _DOWNLOAD],
                  description="CIFAR-100 (32×32 colour, 100 classes, 50k/10k) from a torchvision folder.",
                  num_classes=100, num_train=50000)(lazy("dm_core.data:_cifar100"))
DATASETS.register("vehicles10", params=[_ROOT, _DOWNLOAD],
                  description="Vehicles-10: the ten vehicle classes of CIFAR-100 (5,000 train / 1,000 test).",
                  num_classes=10, num_train=5000)(lazy("dm_core.data:_vehicles10"))
DATASETS.register("image_folder", params=[
    Param("root", "./data/images", "str", help="folder with train/ and test/ ImageFolder trees"),
    Param("image_size", 32, "int", 4, 512, help="images are resized to image_size × image_size"),
    Param("augment", False, "bool", help="CIFAR-style crop and flip augmentation"),
], description="Any image folder: root/train/<class>/*.png and root/test/<class>/*.png.",
)(lazy("dm_core.data:_image_folder"))
DATASETS.register("arrays", params=[
    Param("path", "./data/arrays.npz", "str", help=".npz with x_train, y_train, x_test, y_test"),
], description="Precomputed arrays: images (N,H,W)/(N,C,H,W) or feature vectors (N,D), e.g. "
               "document vectors for sentiment.")(lazy("dm_core.data:_arrays"))
