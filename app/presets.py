"""Starting points for the launch form: the YAML presets in ``configs/`` and the paper's setups.

The paper's setups (*Derivative Manipulation for General Example Weighting*): CIFAR-10 with
ResNet-56 at symmetric noise rates 20/40/60/80% (its Table 10), CIFAR-100 with ResNet-44
(Table 1) and Vehicles-10 (Table 8). Their optimisation follows the YAML presets in
``configs/`` (which cite their sources). For CIFAR-100 the λ, β are those of the authors' own
published runs (``dm_core.reference``: λ = 0.5 with the β they used at each noise rate). For
CIFAR-10 and Vehicles-10 nothing of the kind could be read (the tables are images), so their
DM values are STARTING POINTS that follow the paper's premise (λ grows with the noise rate,
so ψ = λ/(λ+1) moves towards easier examples; β = 12), and the UI says so. Tune β on a clean
split (``dataset.val_fraction = 0.2``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dm_core.config import ConfigError, parse_config, read_config_file
from dm_core.reference import SOURCES, authors_beta

PAPER_NOTE = ("Paper setups: datasets, models, noise rates and optimisation as in the paper. "
              "CIFAR-100: λ = 0.5 with the β of the authors' own published runs at each noise "
              "rate. CIFAR-10 and Vehicles-10: λ, β are starting points chosen by the paper's "
              "premise (λ grows with the noise rate, β = 12), not its table values, which are "
              "published only as images. Tune β on a clean validation split.")
STARTING_POINT_WARNING = ("λ and β of this paper setup are starting points, not the paper's "
                          "table values.")
AUTHORS_NOTE = "λ and β of this setup are those of the authors' published run ({source})."

# λ by symmetric noise rate (premise: the emphasis mode ψ = λ/(λ+1) moves up with noise).
_LAMBDA_BY_RATE = {0.2: 0.5, 0.4: 1.0, 0.6: 1.0, 0.8: 2.0}
_BETA = 12.0
_CIFAR100_LAMBDA = 0.5  # the authors' best λ on CIFAR-100 at every noisy rate


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


def _paper(files: dict[str, dict[str, Any]]) -> dict[str, tuple[dict[str, Any], bool]]:
    """label -> (raw config, whether λ and β are the authors' own)."""
    out: dict[str, tuple[dict[str, Any], bool]] = {}
    cifar10 = files.get("cifar10-resnet56-symmetric-40-dm.yaml")
    if cifar10 is not None:
        for rate, lam in _LAMBDA_BY_RATE.items():
            out[f"Paper · CIFAR-10 ResNet-56, r = {rate:.0%} (Table 10)"] = (_merge(cifar10, {
                "name": f"cifar10-resnet56-symmetric-{rate * 100:.0f}-dm",
                "dataset": {"noise": {"kind": "symmetric", "rate": rate}},
                "loss": {"name": "dm", "lam": lam, "beta": _BETA}}), False)
    cifar100 = files.get("cifar100-resnet44-symmetric-40-dm.yaml")
    if cifar100 is not None:
        for rate in (0.0, 0.2, 0.4, 0.6):
            beta = authors_beta(_CIFAR100_LAMBDA, rate)
            out[f"Paper · CIFAR-100 ResNet-44, r = {rate:.0%} (Table 1; the authors' λ, β)"] = (
                _merge(cifar100, {
                    "name": f"cifar100-resnet44-symmetric-{rate * 100:.0f}-dm",
                    "dataset": {"noise": {"kind": "symmetric", "rate": rate},
                                "balanced_sampler": True},
                    "loss": {"name": "dm", "lam": _CIFAR100_LAMBDA, "beta": beta}}), True)
        for rate in (0.2, 0.4):
            lam = _LAMBDA_BY_RATE[rate]
            out[f"Paper · Vehicles-10 ResNet-44, r = {rate:.0%} (Table 8)"] = (_merge(cifar100, {
                "name": f"vehicles10-resnet44-symmetric-{rate * 100:.0f}-dm",
                "dataset": {"name": "vehicles10", "noise": {"kind": "symmetric", "rate": rate}},
                "loss": {"name": "dm", "lam": lam, "beta": _BETA},
                "iterations": 20_000, "schedule": {"milestones": [10_000, 15_000]}}), False)
    return out


def paper_presets() -> dict[str, dict[str, Any]]:
    """The paper's setups as raw config dicts, labelled for the preset list."""
    return {label: data for label, (data, _) in _paper(yaml_presets()).items()}


def paper_preset_note(label: str) -> tuple[str, str] | None:
    """What the launch page says about a paper preset: ("info", …) when its λ, β are the
    authors' own, ("warning", …) when they are starting points; None for other presets."""
    found = _paper(yaml_presets()).get(label)
    if found is None:
        return None
    return ("info", AUTHORS_NOTE.format(source=SOURCES)) if found[1] else ("warning", STARTING_POINT_WARNING)


def all_presets() -> dict[str, dict[str, Any]]:
    """Every preset, validated and resolved (defaults filled in); invalid ones are left out."""
    out = {}
    for label, data in {**yaml_presets(), **paper_presets()}.items():
        try:
            out[label] = parse_config(data).model_dump(mode="json")
        except ConfigError:
            continue
    return out
