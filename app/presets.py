"""Starting points for the launch form: the YAML presets in ``configs/`` and the paper's setups.

The paper's setups (*Derivative Manipulation for General Example Weighting*) are not declared
here: each is a run of a ``dm repro`` experiment of the catalogue (``studio.repro``), the one
its ``launch`` field names: CIFAR-10 with ResNet-56 (the paper's Table 10; at each noise rate
the λ with the paper's best final test accuracy, with its β), CIFAR-100 with ResNet-44 (Table
1; the λ, β of the authors' own published runs) and Vehicles-10 (Table 8; nothing published
could be read, the table is an image, so its λ, β are STARTING POINTS that follow the
paper's premise, and the UI says so). This module only labels them and says where their λ, β
come from. Tune β on a clean split (``dataset.val_fraction = 0.2``).

The form and its presets hold out ``FORM_VAL_FRACTION`` of the training data as a clean
validation split where a config holds out none: the Compare page ranks settings on validation
accuracy only, so without one it names no winner. ``RunConfig``'s own default (no split, every
example trained on, as the paper's runs) is what ``dm submit`` and the config files keep.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dm_core.config import ConfigError, RunConfig, parse_config, read_config_file
from dm_core.reference import CIFAR10_SOURCE, SOURCES
from studio.repro.presets import Experiment, Method, get_experiment
from studio.submission import noise_takes_rate

FORM_VAL_FRACTION = 0.2
PAPER_NOTE = ("Paper setups: datasets, models, noise rates and optimisation as in the paper "
              "(the `dm repro` experiments). CIFAR-10: at each noise rate the λ with the "
              "paper's best final test accuracy, with its β. CIFAR-100: the λ, β of the "
              "authors' own published runs at each noise rate. Vehicles-10: λ, β are starting "
              "points chosen by the paper's premise (λ grows with the noise rate), not its "
              "table values, which are published only as an image. Tune β on a clean "
              "validation split: every preset holds out "
              f"{FORM_VAL_FRACTION:.0%} of the training data as one (dataset.val_fraction), "
              "so Compare can name a winner; set it to 0 to train on every example as the "
              "paper does.")
STARTING_POINT_WARNING = ("λ and β of this paper setup are starting points, not the paper's "
                          "table values.")
AUTHORS_NOTE = "λ and β of this setup are those of the authors' published run ({source})."
PAPER_TABLE_NOTE = ("λ and β of this setup are the paper's: the best final test accuracy at "
                    "this noise rate, {final:.1f}% (CCE {cce:.1f}%), in {source}.")

# Catalogue experiment -> how the preset list titles its runs, and where their λ, β come from.
PAPER_SETUPS = {
    "cifar10-table10": ("CIFAR-10 ResNet-56", "Table 10; the paper's λ, β", "paper"),
    "cifar100-table1": ("CIFAR-100 ResNet-44", "Table 1; the authors' λ, β", "authors"),
    "vehicles10-table8": ("Vehicles-10 ResNet-44", "Table 8", "starting point"),
}


def configs_dir() -> Path:
    """``$DM_CONFIGS`` (the Docker image sets it), else ``configs/`` of the source tree, else
    of the working directory (an installed app)."""
    if os.environ.get("DM_CONFIGS"):
        return Path(os.environ["DM_CONFIGS"])
    here = Path(__file__).resolve().parents[1] / "configs"
    return here if here.is_dir() else Path.cwd() / "configs"


def yaml_presets() -> dict[str, dict[str, Any]]:
    """``configs/*.yaml`` by file name, as raw dicts (validated when loaded into the form)."""
    out = {}
    for path in sorted(configs_dir().glob("*.y*ml")):
        try:
            out[path.name] = read_config_file(path)
        except ConfigError:
            continue
    return out


def _note(source: str, exp: Experiment, cond_label: str, method: Method) -> tuple[str, str]:
    if source == "paper" and exp.reference is not None:
        row, cce = exp.reference(cond_label, method.label), exp.reference(cond_label, "CCE")
        if row is not None and cce is not None:
            return "info", PAPER_TABLE_NOTE.format(final=row.final * 100, cce=cce.final * 100,
                                                   source=CIFAR10_SOURCE)
    if source == "authors":
        return "info", AUTHORS_NOTE.format(source=SOURCES)
    return "warning", STARTING_POINT_WARNING


def preset_name(cfg: RunConfig) -> str:
    """``cifar10-resnet56-symmetric-40-dm``: what a paper preset's runs are named."""
    noise = cfg.dataset.noise
    return (f"{cfg.dataset.name}-{cfg.model.name}-{noise.kind}-{noise.rate * 100:.0f}-"
            f"{cfg.loss.name}")


def paper_sources() -> dict[str, tuple[Experiment, str, Method, RunConfig]]:
    """label -> (its catalogue experiment, condition, method, that run's config as the
    catalogue gives it), in the order of ``PAPER_SETUPS``."""
    out = {}
    for name, (title, table, _) in PAPER_SETUPS.items():
        exp = get_experiment(name)
        for cond_label, method, cfg in exp.launch_configs():
            out[f"Paper · {title}, r = {cfg.dataset.noise.rate:.0%} ({table})"] = (
                exp, cond_label, method, cfg)
    return out


def paper_presets() -> dict[str, dict[str, Any]]:
    """The paper's setups as raw config dicts, labelled for the preset list: the catalogue's
    run, named as a preset rather than as a run of a ``dm repro`` group."""
    return {label: cfg.model_dump(mode="json") | {"name": preset_name(cfg)}
            for label, (_, _, _, cfg) in paper_sources().items()}


def paper_preset_note(label: str) -> tuple[str, str] | None:
    """What the launch page says about a paper preset: ("info", …) when its λ, β are
    published ones, ("warning", …) when they are starting points; None for other presets."""
    found = paper_sources().get(label)
    if found is None:
        return None
    exp, cond_label, method, _ = found
    return _note(PAPER_SETUPS[exp.name][2], exp, cond_label, method)


def with_validation_split(cfg: dict[str, Any]) -> dict[str, Any]:
    """A resolved config dict with ``dataset.val_fraction`` = ``FORM_VAL_FRACTION`` where it
    holds out none (a config's own split is kept).

    >>> with_validation_split({"dataset": {"name": "digits", "val_fraction": 0.0}})["dataset"]
    {'name': 'digits', 'val_fraction': 0.2}
    >>> with_validation_split({"dataset": {"val_fraction": 0.1}})["dataset"]["val_fraction"]
    0.1
    """
    dataset = dict(cfg.get("dataset") or {})
    if not dataset.get("val_fraction"):
        dataset["val_fraction"] = FORM_VAL_FRACTION
    return {**cfg, "dataset": dataset}


def with_clean_labels_named(cfg: dict[str, Any]) -> dict[str, Any]:
    """A resolved config dict whose noise takes a rate but is at r = 0 (the paper's clean
    column, which ``dm repro`` trains as symmetric noise at 0) with the noise kind ``none``:
    the same labels, under the name the form accepts (it refuses a noisy kind at r = 0).

    >>> with_clean_labels_named({"dataset": {"noise": {"kind": "symmetric", "rate": 0.0}}})
    {'dataset': {'noise': {'kind': 'none', 'rate': 0.0}}}
    """
    dataset = dict(cfg.get("dataset") or {})
    noise = dict(dataset.get("noise") or {})
    if noise_takes_rate(str(noise.get("kind"))) and noise.get("rate") == 0 \
            and not noise.get("transition"):
        dataset["noise"] = {**noise, "kind": "none"}
        return {**cfg, "dataset": dataset}
    return cfg


def form_defaults() -> dict[str, Any]:
    """What the Launch form starts from: ``RunConfig``'s defaults with a validation split."""
    return with_validation_split(RunConfig().model_dump(mode="json"))


def all_presets() -> dict[str, dict[str, Any]]:
    """Every preset, validated and resolved (defaults filled in), with a validation split
    (``with_validation_split``) and clean labels named as such (``with_clean_labels_named``);
    invalid ones are left out."""
    out = {}
    for label, data in {**yaml_presets(), **paper_presets()}.items():
        try:
            resolved = parse_config(data).model_dump(mode="json")
            out[label] = parse_config(with_clean_labels_named(
                with_validation_split(resolved))).model_dump(mode="json")
        except ConfigError:
            continue
    return out
