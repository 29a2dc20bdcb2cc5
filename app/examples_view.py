"""What the Examples page shows, computed without Streamlit: the link's run, the suspects table
with thumbnails, the runs trained on the same data, and the examples one run's scheme
down-weights while another's does not.

A share of the gradient is shown relative to an equal share: ``share × batch size``, so 1 is
what every example of a batch gets when all weigh the same, whatever the batch size. An
example counts as *down-weighted* by a run when it got less than ``DOWN`` of an equal share on
average, and as *not* down-weighted when it got at least an equal share.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dm_store import RunInfo
from studio.suspects import RunExamples

DOWN = 0.5  # below half an equal share of its batches' gradient: down-weighted
THUMBNAIL_PIXELS = 32  # a thumbnail's longer side: an 8×8 digit is drawn 4× larger
THUMBNAIL_ROWS = 50  # thumbnails only for the table's first rows: each is a PNG in the page


def parse_run_link(value: str | None) -> tuple[int | None, str | None]:
    """The ``?run=`` of a link as (run id, None), or (None, why it is refused); (None, None)
    without one.

    >>> parse_run_link("7"), parse_run_link(None), parse_run_link("seven")[1]
    ((7, None), (None, None), "The link's run 'seven' is not a run id (a whole number, e.g. ?run=7).")
    """
    if value is None:
        return None, None
    text = value.strip()
    if not text.isdigit():
        return None, f"The link's run {value!r} is not a run id (a whole number, e.g. ?run=7)."
    return int(text), None


def batch_size(run: RunInfo) -> int:
    return int(run.config.get("batch_size") or 1)


def relative_share(examples: RunExamples, batch: int) -> np.ndarray:
    """Each example's mean share of its batches' gradient, × the batch size (1 = equal)."""
    return examples.snapshot["share"].astype(np.float64) * batch


def same_data_runs(run: RunInfo, runs: Sequence[RunInfo]) -> list[RunInfo]:
    """The other runs trained on exactly ``run``'s data: the same dataset section of the
    config (dataset, its settings and noise, so the same corrupted labels) and the same seed."""
    key = _data_key(run)
    return [r for r in runs if r.id != run.id and _data_key(r) == key]


def _data_key(run: RunInfo) -> str:
    return json.dumps([run.config.get("dataset"), run.config.get("seed")], sort_keys=True)


def suspects_table(examples: RunExamples, by: str, top: int,
                   images: list[str] | None = None) -> pd.DataFrame:
    """The ``top`` most suspect examples by ``by``: ``rank``, then ``image`` (PNG data URLs, for
    the first rows only) when ``images`` are given, then the export's columns."""
    table = examples.suspects(by, top)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    if images is not None:
        table.insert(1, "image", pd.Series(images, dtype=object).reindex(range(len(table))))
    return table


def image_dataset(config: dict[str, Any]) -> Any:
    """The run's training inputs as the loop built them (``dm_core.data.load_dataset`` from
    the stored config and seed), or None when they are not images (C×H×W, C = 1 or 3) or
    cannot be loaded here."""
    from dm_core.config import parse_config
    from dm_core.data import load_dataset
    from dm_core.registry import ConfigError

    try:
        cfg = parse_config(config)
        data = load_dataset(cfg.dataset.name, seed=cfg.seed, noise_kind=cfg.dataset.noise.kind,
                            noise_rate=cfg.dataset.noise.rate,
                            noise_params=cfg.dataset.noise.extra_params(),
                            val_fraction=cfg.dataset.val_fraction, **cfg.dataset.params())
    except (ConfigError, OSError):
        return None
    shape = tuple(data.x_train.shape[1:])
    if len(shape) != 3 or shape[0] not in (1, 3):
        return None
    return data.x_train.numpy()


def thumbnails(images: np.ndarray, indices: Sequence[int]) -> list[str]:
    """PNG data URLs of ``images[indices]`` (C×H×W, normalised), each stretched to its own
    range and enlarged (nearest neighbour) so its longer side is about ``THUMBNAIL_PIXELS``."""
    from PIL import Image

    out = []
    for i in indices:
        x = images[int(i)].astype(np.float64)
        low, high = x.min(), x.max()
        pixels = np.round(255 * (x - low) / (high - low) if high > low else np.zeros_like(x)).astype(np.uint8)
        pixels = pixels[0] if pixels.shape[0] == 1 else np.transpose(pixels, (1, 2, 0))
        scale = max(1, THUMBNAIL_PIXELS // max(pixels.shape[:2]))
        image = Image.fromarray(pixels).resize((pixels.shape[1] * scale, pixels.shape[0] * scale),
                                               Image.Resampling.NEAREST)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"))
    return out


def down_weighted(a: RunExamples, batch_a: int, b: RunExamples, batch_b: int) -> pd.DataFrame:
    """The examples run ``a`` down-weights (below ``DOWN`` of an equal share) and run ``b`` does
    not (at least an equal share), most down-weighted by ``a`` first: ``example``, the labels,
    ``corrupted``, and both relative shares (``share_a``, ``share_b``)."""
    share_a, share_b = relative_share(a, batch_a), relative_share(b, batch_b)
    idx = np.flatnonzero((share_a < DOWN) & (share_b >= 1.0))
    idx = idx[np.argsort(share_a[idx], kind="stable")]
    return pd.DataFrame({"example": idx, "label": a.label[idx], "original_label": a.original_label[idx],
                         "corrupted": a.corrupted[idx], "share_a": share_a[idx], "share_b": share_b[idx]})
