"""The registries of schemes, losses, models and datasets, readable without torch.

Config validation (``dm_core.config``), ``dm submit`` and the dashboard's forms read what each
registered entry is called, what it does, its equation, its parameters with their ranges and
defaults, and anything else front ends read (a loss's family, a dataset's class count) from
here, without importing torch (about 7 s and 700 MB); training imports it anyway.

Where each kind is declared, once:

- **schemes** in ``dm_core.schemes``, each family by a decorator on the function holding its
  math: that module imports torch only when a tensor reaches the math, so ``SCHEMES`` is
  simply re-exported here.
- **losses** here. A loss is an ``nn.Module``, and a module that defines one cannot be
  imported without torch, so a loss's record (name, description, equation, parameters,
  family) cannot sit on its class; it sits here, and nowhere else: the class takes its
  parameters' defaults and ranges from it (``dm_core.losses`` binds each class to its entry
  with ``@_declared("name")``, and ``build_loss`` builds every entry), and the scheme
  losses take their parameters from their scheme's family.
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

from typing import Any

from dm_core.registry import Param, Registry, lazy
from dm_core.schemes import SCHEMES

__all__ = ["DATASETS", "LOSSES", "MARGIN_CAP", "MODELS", "SCHEMES"]

LOSSES = Registry("loss")
MODELS = Registry("model")
DATASETS = Registry("dataset")


# ---------------------------------------------------------------------- losses (dm_core.losses)

# The margin cap eps. The authors' Caffe layer uses 1e-6 and their PyTorch code (ProSelfLC)
# 1e-8; the default here is the Caffe layer's. m_i = (1-p_i)/((1-p_i) + eps/2) reaches 1/2
# where 1 - p_i = eps/2, i.e. at the logit margin z_y - logsumexp_{j != y} z_j =
# log((1 - eps/2)/(eps/2)) (since 1 - p_i = 1/(1 + exp(margin))): 14.51 for 1e-6 and 19.11
# for 1e-8, computed with that formula (tests/test_losses.py checks it against the gradient).
MARGIN_CAP = Param("eps", 1e-6, low=0.0, ui_low=0.0, ui_high=1e-3,
                   help="Margin cap: examples fitted to within eps (m_i = 1/2 at a logit margin of 14.5) fade "
                        "out, so a batch's gradient decays as it is fitted. 0 gives the exact Eq. 7.")


# loss name -> (scheme, normalise, description)
_SCHEME_LOSSES: dict[str, tuple[str, bool, str]] = {
    "cce": ("cce", False, "Categorical cross-entropy, mean over the batch."),
    "mae": ("mae", False, "Mean absolute error 1 - p_i (robust to label noise, slow to fit)."),
    "mse": ("mse", False, "Mean squared error (1 - p_i)^2."),
    "gce": ("gce", False, "Generalised cross-entropy (1 - p_i^q)/q (Zhang & Sabuncu 2018)."),
    "cce-dn": ("cce", True, "CCE's weights with derivative normalisation."),
    "mae-dn": ("mae", True, "MAE's weights with derivative normalisation."),
    "mse-dn": ("mse", True, "MSE's weights with derivative normalisation."),
    "gce-dn": ("gce", True, "GCE's weights with derivative normalisation."),
    "dm": ("dm", True, "Derivative manipulation: exp(beta p^lam (1-p)) weights with DN."),
    "dm-normal": ("normal", True, "DM with the normal-shaped EDF and DN."),
    "dm-exponential": ("exponential", True, "DM with the exponential EDF and DN."),
    "dm-beta": ("beta", True, "DM with the beta-shaped EDF and DN."),
}


# The DN losses whose weight vanishes at both ends of p (MAE's 2p(1-p), MSE's, GCE's and the
# beta family's at its defaults): when a batch's examples sit near p = 0 or 1, its whole unit of
# gradient lands on the few in between, the gradient norm jumps a hundredfold and a relative clip
# only slows the climb. They diverged within a few hundred steps at lr 0.1 under clipping
# relative to the running norm and at a fixed norm of 2 and 3, and trained at 1
# (benchmarks/bench_stability.py, docs/benchmarks.md): their default fixed clip.
_VANISHING_WEIGHT_CLIP = {"mae-dn": 1.0, "mse-dn": 1.0, "gce-dn": 1.0, "dm-beta": 1.0}


def _loss(name: str, **declaration: Any) -> None:
    """Declare the loss ``name``: ``dm_core.losses.build_loss`` builds it (imported on the
    first ``create``) from the parameters ``create`` has checked against this record."""
    LOSSES.register(name, **declaration)(lazy("dm_core.losses:build_loss", name))


# A scheme loss's parameters are its family's (dm_core.schemes), plus the margin cap under DN.
for _name, (_scheme, _normalise, _description) in _SCHEME_LOSSES.items():
    _entry = SCHEMES.get(_scheme)
    _loss(
        _name,
        description=_description,
        params=[*_entry.params, MARGIN_CAP] if _normalise else list(_entry.params),
        equation=_entry.equation + ("; weights / Σ_batch w (DN), Eq. 7 gradient" if _normalise
                                    else "; weights / N: the loss's own gradient"),
        family="scheme", scheme=_scheme, normalise=_normalise,
        **({"clip_grad_norm": _VANISHING_WEIGHT_CLIP[_name]} if _name in _VANISHING_WEIGHT_CLIP else {}),
    )

_UNIT = {"low": 0.0, "high": 1.0, "ui_low": 0.0, "ui_high": 1.0}

_loss(
    "label-smoothing", description="Cross-entropy with label smoothing.",
    equation="L = CE(z, (1 − ε)·onehot(y) + ε/C)",
    params=[Param("epsilon", 0.1, low=0.0, high=1.0, high_inclusive=False, ui_low=0.0, ui_high=0.5,
                  help="Probability mass spread uniformly over all classes.")],
    family="baseline",
)

_loss(
    "boot-soft", description="Soft bootstrapping (Reed et al. 2015): the target mixes the label "
                             "with the model's own prediction.",
    equation="L = −Σ_k (β·onehot(y)_k + (1 − β)·p_k) log p_k",
    params=[Param("beta", 0.95, **_UNIT, help="Weight of the annotated label (1 gives CCE).")],
    family="baseline",
)

_loss(
    "boot-hard", description="Hard bootstrapping (Reed et al. 2015): the target mixes the label "
                             "with the model's predicted class.",
    equation="L = −β log p_y − (1 − β) log p_argmax",
    params=[Param("beta", 0.8, **_UNIT, help="Weight of the annotated label (1 gives CCE).")],
    family="baseline",
)

_loss(
    "sce", description="Symmetric cross-entropy (Wang et al. 2019): CE plus reverse CE.",
    equation="L = α·CE + β·RCE,  RCE = −A·(1 − p_y)",
    params=[
        Param("alpha", 0.1, low=0.0, ui_low=0.0, ui_high=2.0, help="Weight of the CE term."),
        Param("beta", 1.0, low=0.0, ui_low=0.0, ui_high=2.0, help="Weight of the reverse CE term."),
        Param("A", -4.0, high=0.0, high_inclusive=False, ui_low=-10.0, ui_high=-1.0,
              help="The value that stands in for log 0 in the reverse CE."),
    ],
    family="baseline",
)

_loss(
    "focal", description="Focal loss (Lin et al. 2017): CE down-weighted on well-fitted examples.",
    equation="L = −(1 − p_y)^γ log p_y",
    params=[Param("gamma", 2.0, low=0.0, ui_low=0.0, ui_high=5.0,
                  help="Focusing parameter; 0 gives CCE.")],
    family="baseline",
)

_loss(
    "co-teaching", description="Co-teaching (Han et al. 2018): two networks, each trained on the "
                               "examples with the smallest loss under the other.",
    equation="L = CE₁ over the (1 − R) easiest under net 2 + CE₂ over the (1 − R) easiest under net 1,  "
             "R = min(τ·epoch/T_k, τ)",
    params=[Param("forget_rate", 0.2, low=0.0, high=1.0, high_inclusive=False, ui_low=0.0, ui_high=0.8,
                  help="τ: the share of each batch finally left out (the noise rate, if known)."),
            Param("gradual_epochs", 10.0, low=0.0, ui_low=0.0, ui_high=50.0,
                  help="T_k: epochs over which the left-out share rises from 0 to τ.")],
    family="method", two_networks=True,
)

_loss(
    "elr", description="Early-learning regularisation (Liu et al. 2020): CE plus λ·log(1 − ⟨t_i, p_i⟩), "
                       "t_i a running average of the model's predictions for example i.",
    equation="L = CE(z, y) + λ·log(1 − ⟨t_i, p_i⟩),  t_i ← β t_i + (1 − β) p_i",
    params=[Param("lam", 3.0, low=0.0, ui_low=0.0, ui_high=10.0, help="Weight of the regulariser (0 gives CCE)."),
            Param("momentum", 0.7, low=0.0, high=1.0, high_inclusive=False, ui_low=0.0, ui_high=0.99,
                  help="Momentum β of each example's running average of predictions.")],
    family="baseline", per_example_state=True,
)


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
