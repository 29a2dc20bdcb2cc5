"""Starting points for the launch form: the YAML presets in ``configs/`` and the paper's setups.

The paper's setups (*Derivative Manipulation for General Example Weighting*): CIFAR-10 with
ResNet-56 at symmetric noise rates 20/40/60/80% (its Table 10), CIFAR-100 with ResNet-44
(Table 1) and Vehicles-10 (Table 8). Their optimisation follows the YAML presets in
``configs/`` (which cite their sources). For CIFAR-10 the λ, β are the paper's
(``dm_core.reference.PAPER_CIFAR10``: at each noise rate the λ with the best final test
accuracy, with its β). For CIFAR-100 they are those of the authors' own published runs
(``dm_core.reference``: λ = 0.5 with the β they used at each noise rate). For Vehicles-10
nothing of the kind could be read (the table is an image), so its DM values are STARTING
POINTS that follow the paper's premise (λ grows with the noise rate, so ψ = λ/(λ+1) moves
towards easier examples; β = 12), and the UI says so. Tune β on a clean split
(``dataset.val_fraction = 0.2``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dm_core.config import ConfigError, parse_config, read_config_file
from dm_core.reference import CIFAR10_SOURCE, PAPER_CIFAR10, SOURCES, ReferenceResult, authors_beta

PAPER_NOTE = ("Paper setups: datasets, models, noise rates and optimisation as in the paper. "
              "CIFAR-10: at each noise rate the λ with the paper's best final test accuracy, "
              "with its β. CIFAR-100: λ = 0.5 with the β of the authors' own published runs at "
              "each noise rate. Vehicles-10: λ, β are starting points chosen by the paper's "
              "premise (λ grows with the noise rate, β = 12), not its table values, which are "
              "published only as an image. Tune β on a clean validation split.")
STARTING_POINT_WARNING = ("λ and β of this paper setup are starting points, not the paper's "
                          "table values.")
AUTHORS_NOTE = "λ and β of this setup are those of the authors' published run ({source})."
PAPER_TABLE_NOTE = ("λ and β of this setup are the paper's: the best final test accuracy at "
                    "this noise rate, {final:.1f}% (CCE {cce:.1f}%), in {source}.")

# Vehicles-10, λ by symmetric noise rate (premise: the emphasis mode ψ = λ/(λ+1) moves up
# with noise).
_LAMBDA_BY_RATE = {0.2: 0.5, 0.4: 1.0}
_BETA = 12.0
_CIFAR100_LAMBDA = 0.5  # the authors' best λ on CIFAR-100 at every noisy rate


def _paper_cifar10_best(rate: float) -> tuple[ReferenceResult, ReferenceResult]:
    """The DM row with the best final test accuracy at ``rate`` in the paper's CIFAR-10
    table, and the CCE row beside it."""
    rows = [r for r in PAPER_CIFAR10 if r.rate == rate]
    best = max((r for r in rows if r.method.startswith("DM")), key=lambda r: r.final)
    return best, next(r for r in rows if r.method == "CCE")


def configs_dir() -> Path:
    """``$DM_CONFIGS`` (the Docker image sets it), else ``configs/`` of the source tree, else
    of the working directory (an installed app)."""
    if os.environ.get("DM_CONFIGS"):
        return Path(os.environ["DM_CONFIGS"])
    here = Path(__file__).resolve().parents[1] / "configs"
    return here if here.is_dir() else Path.cwd() / "configs"


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def yaml_presets() -> dict[str, dict[str, Any]]:
    """``configs/*.yaml`` by file name, as raw dicts (validated when loaded into the form)."""
    out = {}
    for path in sorted(configs_dir().glob("*.y*ml")):
        try:
            out[path.name] = read_config_file(path)
        except ConfigError:
            continue
    return out


def _paper(files: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], tuple[str, str]]]:
    """label -> (raw config, what the launch page says about its λ and β)."""
    out: dict[str, tuple[dict[str, Any], tuple[str, str]]] = {}
    cifar10 = files.get("cifar10-resnet56-symmetric-40-dm.yaml")
    if cifar10 is not None:
        for rate in (0.2, 0.4, 0.6, 0.8):
            best, cce = _paper_cifar10_best(rate)
            lam = float(best.method.split("=")[1])
            out[f"Paper · CIFAR-10 ResNet-56, r = {rate:.0%} (Table 10; the paper's λ, β)"] = (
                _merge(cifar10, {
                    "name": f"cifar10-resnet56-symmetric-{rate * 100:.0f}-dm",
                    "dataset": {"noise": {"kind": "symmetric", "rate": rate}},
                    "loss": {"name": "dm", "lam": lam, "beta": best.beta}}),
                ("info", PAPER_TABLE_NOTE.format(final=best.final * 100, cce=cce.final * 100,
                                                 source=CIFAR10_SOURCE)))
    cifar100 = files.get("cifar100-resnet44-symmetric-40-dm.yaml")
    if cifar100 is not None:
        for rate in (0.0, 0.2, 0.4, 0.6):
            beta = authors_beta(_CIFAR100_LAMBDA, rate)
            out[f"Paper · CIFAR-100 ResNet-44, r = {rate:.0%} (Table 1; the authors' λ, β)"] = (
                _merge(cifar100, {
                    "name": f"cifar100-resnet44-symmetric-{rate * 100:.0f}-dm",
                    "dataset": {"noise": {"kind": "symmetric", "rate": rate},
                                "balanced_sampler": True},
                    "loss": {"name": "dm", "lam": _CIFAR100_LAMBDA, "beta": beta}}),
                ("info", AUTHORS_NOTE.format(source=SOURCES)))
        for rate, lam in _LAMBDA_BY_RATE.items():
            out[f"Paper · Vehicles-10 ResNet-44, r = {rate:.0%} (Table 8)"] = (_merge(cifar100, {
                "name": f"vehicles10-resnet44-symmetric-{rate * 100:.0f}-dm",
                "dataset": {"name": "vehicles10", "noise": {"kind": "symmetric", "rate": rate},
                            "balanced_sampler": False, "classes_per_batch": None},
                "loss": {"name": "dm", "lam": lam, "beta": _BETA},
                "iterations": 20_000, "schedule": {"milestones": [10_000, 15_000]}}),
                ("warning", STARTING_POINT_WARNING))
    return out


def paper_presets() -> dict[str, dict[str, Any]]:
    """The paper's setups as raw config dicts, labelled for the preset list."""
    return {label: data for label, (data, _) in _paper(yaml_presets()).items()}


def paper_preset_note(label: str) -> tuple[str, str] | None:
    """What the launch page says about a paper preset: ("info", …) when its λ, β are
    published ones, ("warning", …) when they are starting points; None for other presets."""
    found = _paper(yaml_presets()).get(label)
    return None if found is None else found[1]


def all_presets() -> dict[str, dict[str, Any]]:
    """Every preset, validated and resolved (defaults filled in); invalid ones are left out."""
    out = {}
    for label, data in {**yaml_presets(), **paper_presets()}.items():
        try:
            out[label] = parse_config(data).model_dump(mode="json")
        except ConfigError:
            continue
    return out
