"""Runs told apart by what differs in their configs, and seeds pooled only where nothing else does.

Every view that puts several runs side by side (the Compare page's tables and legends, a
group's landscape) asks the same two questions: which settings do these runs differ in, and
which runs are replicates of one another? The answers live here, once:

- ``varying_keys``: the config keys (dotted paths) whose values differ between the runs,
  ``name`` and ``seed`` aside. For a λ/β grid they are ``loss.lam`` and ``loss.beta``; for a
  study's tuning phase, whatever the study swept.
- ``settings``: the runs grouped into replicate sets, runs whose configs are equal in
  everything but ``name`` and ``seed``. A "mean over seeds" pools one set and nothing more:
  two runs that differ in anything else (the iterations, the noise rate, a loss parameter)
  are two settings, however alike their names.
- ``difference_label``: a setting's label, its method and what differs, e.g.
  ``dm λ=1 β=12 · 2000 it``; ``run_labels`` adds ``seed N`` where a setting holds several runs.

Plain data, no Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dm_store import RunInfo
from studio.experiments.verdicts import MISSING, Sample, spread_text

IGNORED_KEYS = ("name", "seed")  # what replicates may differ in
SYMBOLS = {"lam": "λ", "beta": "β", "psi": "ψ", "alpha": "α", "eta": "η", "eps": "ε",
           "gamma": "γ"}
MAX_TERM = 40  # characters of one "key=value" in a label (a matrix would fill a legend)
_MISSING = object()

__all__ = ["IGNORED_KEYS", "NO_VALUE", "SPREAD_DIGITS", "Setting", "difference_label",
           "flat_config", "format_value", "key_title", "pivot_by", "result_columns", "run_labels",
           "seed_spread_table", "seed_table", "seed_values", "settings", "spread_cell",
           "varying_keys"]
NOT_RESULTS = ("id", "seed", "iterations", "noise rate")  # numeric columns that are no result
NO_VALUE = MISSING  # a table cell without a value, as every verdict prints it
SPREAD_DIGITS = 4  # accuracies are fractions: 4 decimals tell 0.9615 from 0.9610


def spread_cell(sample: Sample | Sequence[float]) -> str:
    """A value over seeds as every table, chart and verdict of the Compare page writes it:
    mean ± sample std (ddof = 1) with n (``studio.experiments.verdicts.spread_text``).

    >>> spread_cell([0.9575, 0.9615, 0.9655])
    '0.9615 ± 0.0040 (n=3)'
    >>> spread_cell([0.9615]), spread_cell([])
    ('0.9615 (n=1)', '—')
    """
    found = sample if isinstance(sample, Sample) else Sample.of(sample)
    return spread_text(found, percent=False, digits=SPREAD_DIGITS)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    return value


def flat_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as ``{dotted key: value}`` (lists as tuples, so values are hashable).

    >>> flat_config({"loss": {"name": "dm", "lam": 1.0}, "model": {"hidden": [32]}, "seed": 0})
    {'loss.name': 'dm', 'loss.lam': 1.0, 'model.hidden': (32,), 'seed': 0}
    """
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_config(value, path + "."))
        else:
            out[path] = _hashable(value)
    return out


def _canonical(value: Any) -> Any:
    """A value as compared: numbers as floats (a JSON round trip may turn 1.0 into 1), NaN
    as one marker, bools apart from numbers."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return "nan" if math.isnan(value) else float(value)
    if isinstance(value, tuple):
        return tuple(_canonical(v) for v in value)
    return value


def varying_keys(configs: Sequence[Mapping[str, Any]], ignore: Sequence[str] = ()) -> list[str]:
    """The dotted keys whose values differ between ``configs`` (a key some lack counts as
    differing), ``name`` and ``seed`` aside, in the order the configs first list them.

    >>> varying_keys([{"name": "a", "seed": 0, "loss": {"lam": 1.0, "beta": 4.0}},
    ...               {"name": "b", "seed": 1, "loss": {"lam": 1.0, "beta": 12.0}}])
    ['loss.beta']
    """
    flats = [flat_config(c) for c in configs]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    out = []
    for key in keys:
        if key in IGNORED_KEYS or key in ignore:
            continue
        values = [_canonical(f.get(key, _MISSING)) for f in flats]
        if any(v != values[0] for v in values[1:]):
            out.append(key)
    return out


def format_value(value: Any) -> str:
    """A config value as a label shows it: numbers with ``:g``, lists comma-separated.

    >>> format_value(12.0), format_value(1e-06), format_value((256, 256)), format_value(None)
    ('12', '1e-06', '256,256', '–')
    """
    if value is None or value is _MISSING:
        return "–"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(format_value(v) for v in value)
    return str(value)


def key_title(key: str) -> str:
    """A config key as an axis title: ``loss.beta`` → ``β (loss.beta)``.

    >>> key_title("loss.lam"), key_title("iterations")
    ('λ (loss.lam)', 'iterations')
    """
    last = key.rsplit(".", 1)[-1]
    return f"{SYMBOLS[last]} ({key})" if last in SYMBOLS else key


def _short(text: str) -> str:
    return text if len(text) <= MAX_TERM else text[:MAX_TERM - 1] + "…"


def _term(key: str, value: Any) -> str:
    """One varying key of a label: ``2000 it``, ``r=0.4``, ``resnet56``, ``lr=0.1``."""
    shown = format_value(value)
    if key == "iterations":
        return f"{shown} it"
    if key == "dataset.noise.rate":
        return f"r={shown}"
    if key == "dataset.noise.kind":
        return f"{shown} noise"
    if key in ("dataset.name", "model.name", "optimizer.name"):
        return _short(shown)
    last = key.rsplit(".", 1)[-1]
    return _short(f"{SYMBOLS.get(last, last)}={shown}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def difference_label(cfg: Mapping[str, Any], varying: Sequence[str]) -> str:
    """The method (the loss and its numeric parameters; ε only when it varies) and every
    other key of ``varying``.

    >>> cfg = {"iterations": 2000, "loss": {"name": "dm", "lam": 1.0, "beta": 12.0, "eps": 1e-6}}
    >>> difference_label(cfg, ["loss.beta", "iterations"])
    'dm λ=1 β=12 · 2000 it'
    >>> difference_label({"loss": {"name": "cce"}, "dataset": {"noise": {"rate": 0.4}}},
    ...                  ["loss.name", "dataset.noise.rate"])
    'cce · r=0.4'
    """
    flat = flat_config(cfg)
    method = [format_value(flat.get("loss.name"))]
    shown = {"loss.name"}
    for key, value in flat.items():
        if key.startswith("loss.") and key != "loss.name" and _is_number(value) \
                and (key != "loss.eps" or key in varying):
            last = key.split(".", 1)[1]
            method.append(f"{SYMBOLS.get(last, last)}={format_value(value)}")
            shown.add(key)
    parts = [" ".join(method)]
    # A key this config lacks (λ of a CCE run) says nothing about it: left out.
    parts += [_term(k, flat[k]) for k in varying if k not in shown and k in flat]
    return " · ".join(parts)


@dataclass(frozen=True)
class Setting:
    """Runs whose configs are equal but for ``name`` and ``seed``: one point of a sweep.

    ``values`` are its coordinates, the value of every varying key (None where its config
    lacks the key, e.g. λ of a CCE run)."""

    label: str
    runs: tuple[RunInfo, ...]
    values: dict[str, Any]

    @property
    def seeds(self) -> list[Any]:
        return [r.config.get("seed") for r in self.runs]


def _identity(cfg: Mapping[str, Any], ignore: Sequence[str]) -> tuple:
    return tuple(sorted((k, repr(_canonical(v))) for k, v in flat_config(cfg).items()
                        if k not in IGNORED_KEYS and k not in ignore))


def settings(runs: Sequence[RunInfo], ignore: Sequence[str] = ()) -> list[Setting]:
    """``runs`` grouped into replicate sets, in the order of their first run (by id), each
    labelled by what differs between the sets (``difference_label``). Keys in ``ignore``
    are set aside like the seed (a table with one column per noise rate passes
    ``dataset.noise.rate``)."""
    ordered = sorted(runs, key=lambda r: r.id)
    varying = varying_keys([r.config for r in ordered], ignore)
    flats = [flat_config(r.config) for r in ordered]
    # Labels name a key only where it takes two values among the configs that have it (a
    # CCE run lacking DM's ε does not make ε worth naming on every DM run).
    named = [k for k in varying
             if len({repr(_canonical(f[k])) for f in flats if k in f}) > 1]
    groups: dict[tuple, list[RunInfo]] = {}
    for run in ordered:
        groups.setdefault(_identity(run.config, ignore), []).append(run)
    out = []
    for members in groups.values():
        flat = flat_config(members[0].config)
        out.append(Setting(difference_label(members[0].config, named), tuple(members),
                           {k: flat.get(k) for k in varying}))
    # Two settings the label cannot tell apart (values equal once formatted): name their runs.
    seen: dict[str, int] = {}
    for s in out:
        seen[s.label] = seen.get(s.label, 0) + 1
    return [s if seen[s.label] == 1 else
            Setting(f"{s.label} · " + ",".join(f"#{r.id}" for r in s.runs), s.runs, s.values)
            for s in out]


def run_labels(runs: Sequence[RunInfo]) -> dict[int, str]:
    """A legend label per run id: its setting's label, with ``seed N`` where the setting
    holds several runs (and ``#id`` where even the seed repeats)."""
    out: dict[int, str] = {}
    for s in settings(runs):
        seeds = s.seeds
        for run in s.runs:
            label = s.label
            if len(s.runs) > 1:
                label += f" · seed {format_value(run.config.get('seed'))}"
                if seeds.count(run.config.get("seed")) > 1:
                    label += f" · #{run.id}"
            out[run.id] = label
    return out


def result_columns(table: pd.DataFrame) -> list[str]:
    """The numeric result columns of a per-run table (not its id, seed, iterations or noise
    rate)."""
    return [c for c in table.columns
            if c not in NOT_RESULTS and pd.api.types.is_numeric_dtype(table[c])
            and not pd.api.types.is_bool_dtype(table[c])]


def seed_values(table: pd.DataFrame, runs: Sequence[RunInfo], column: str) -> dict[str, list[float]]:
    """Per setting (``settings``, by label), the finite values of ``column`` of the per-run
    ``table`` (one row per run, an ``id`` column), one per run: what a mean over seeds pools
    and what a test over seeds compares."""
    return _values_by_setting(table.set_index("id"), settings(runs), column)


def _values_by_setting(by_id: pd.DataFrame, sets: Sequence[Setting], column: str) -> dict[str, list[float]]:
    out = {}
    for s in sets:
        ids = [r.id for r in s.runs if r.id in by_id.index]
        values = by_id.loc[ids, column].to_numpy(dtype=np.float64) if column in by_id else np.array([])
        out[s.label] = [float(v) for v in values if np.isfinite(v)]
    return out


def seed_table(table: pd.DataFrame, runs: Sequence[RunInfo]) -> pd.DataFrame:
    """The per-run ``table`` (one row per run, an ``id`` column) pooled over seeds: one row
    per setting, its label, how many runs and which seeds, then the mean and the sample std
    (ddof = 1, the spread of every verdict: ``studio.experiments.verdicts``) of every numeric
    result column (NaN values skipped; std NaN below two values).

    Only replicates are pooled (``settings``): runs that differ in anything but their name
    and seed are separate rows.
    """
    sets, by_id = settings(runs), table.set_index("id")
    results = {column: _values_by_setting(by_id, sets, column) for column in result_columns(table)}
    rows = []
    for s in sets:
        row: dict[str, Any] = {"setting": s.label, "runs": len(s.runs),
                               "seeds": ", ".join(format_value(x) for x in s.seeds)}
        for column, by_setting in results.items():
            values = np.asarray(by_setting[s.label], dtype=np.float64)
            row[column] = float(values.mean()) if values.size else np.nan
            row[f"{column} ± std"] = float(values.std(ddof=1)) if values.size > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def seed_spread_table(table: pd.DataFrame, runs: Sequence[RunInfo],
                      columns: Sequence[str] | None = None) -> pd.DataFrame:
    """``seed_table`` as the page shows it: one row per setting, its label and seeds, and
    each of ``columns`` (default: every numeric result column) as one ``spread_cell``
    (mean ± sample std (n=k), ``—`` where no seed has a value)."""
    sets, by_id = settings(runs), table.set_index("id")
    columns = result_columns(table) if columns is None else list(columns)
    values = {column: _values_by_setting(by_id, sets, column) for column in columns}
    rows = []
    for s in sets:
        row: dict[str, Any] = {"setting": s.label,
                               "seeds": ", ".join(format_value(x) for x in s.seeds)}
        row.update({column: spread_cell(values[column][s.label]) for column in columns})
        rows.append(row)
    return pd.DataFrame(rows, columns=["setting", "seeds", *columns])


def pivot_by(table: pd.DataFrame, runs: Sequence[RunInfo], value: str,
             key: str = "dataset.noise.rate", title: str = "r") -> pd.DataFrame:
    """``value`` (a numeric column of the per-run ``table``) as settings × the values of
    config ``key`` (columns ``r = 0.2``, ``r = 0.4``, ... in numeric order), each cell
    ``mean ± std (n)`` over the replicates there; rows are labelled by what differs apart
    from ``key`` (the layout of the paper's Table 10 for ``key`` = the noise rate)."""
    by_id = table.set_index("id")
    out: dict[str, dict[str, str]] = {}
    columns: set[Any] = set()
    for s in settings(runs, ignore=(key,)):
        cells: dict[Any, list[float]] = {}
        for run in s.runs:
            at = flat_config(run.config).get(key)
            columns.add(at)
            v = by_id[value].get(run.id, np.nan) if value in by_id else np.nan
            if v is not None and np.isfinite(v):
                cells.setdefault(at, []).append(float(v))
            else:
                cells.setdefault(at, [])
        out[s.label] = {}
        for at, values in cells.items():
            out[s.label][f"{title} = {format_value(at)}"] = spread_cell(values)
    order = sorted(columns, key=lambda v: (not isinstance(v, int | float), v if isinstance(v, int | float) else 0, format_value(v)))
    frame = pd.DataFrame.from_dict(out, orient="index")
    frame = frame.reindex(columns=[f"{title} = {format_value(v)}" for v in order]).fillna(NO_VALUE)
    frame.index.name = "setting"
    return frame
