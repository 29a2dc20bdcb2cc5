"""What the Launch page refuses to queue beyond what the config model itself rejects.

``parse_config`` accepts every config that a run can train on, including some that a person
filling in the form almost certainly did not mean (symmetric noise at r = 0 is a clean run
under a noisy name: the experiment scripts use it on purpose, a form user does not), and it
cannot see the files a run will read. ``refusals`` lists both, as ``(field path, message)``
pairs that the page shows under the field they name; nothing is queued while any remain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from dm_core.config import RunConfig
from dm_core.data import check_data_available
from dm_core.noise import NOISE
from dm_core.registry import ConfigError

# The rate the form proposes when a noise kind that takes one is chosen (a rate of 0 would
# corrupt nothing). 0.4 is the noise rate of the shipped digits configs.
PROPOSED_NOISE_RATE = 0.4

__all__ = ["PROPOSED_NOISE_RATE", "noise_takes_rate", "refusals"]


def noise_takes_rate(kind: str) -> bool:
    """Whether noise ``kind`` corrupts labels at a rate (its registry entry has ``rate``)."""
    return kind in NOISE and any(p.name == "rate" for p in NOISE.get(kind).params)


def _zero_rate(cfg: RunConfig) -> str | None:
    noise = cfg.dataset.noise
    # A transition matrix sets the flips itself (its rate must be 0), so only a kind whose
    # rate is its only source of corruption is refused at r = 0.
    if noise_takes_rate(noise.kind) and noise.rate == 0 and not noise.extra_params():
        return (f"dataset.noise.rate: {noise.kind} noise at r = 0 corrupts no label; choose a "
                "rate above 0, or the noise kind none for the annotated labels as they are")
    return None


def refusals(configs: Sequence[RunConfig]) -> list[tuple[str, str]]:
    """``(field path, message)`` for every reason not to queue ``configs``: a noise kind that
    takes a rate at r = 0, and data files missing (``dm_core.data.check_data_available``,
    checked once per distinct dataset section)."""
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for cfg in configs:
        message = _zero_rate(cfg)
        if message is not None and ("dataset.noise.rate", message) not in found:
            found.append(("dataset.noise.rate", message))
        dataset = cfg.dataset.model_dump(mode="json")
        key = json.dumps(dataset, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_data_available(dataset)
        except ConfigError as err:
            text = str(err)
            path = text.split(":", 1)[0] if text.startswith("dataset.") else "dataset"
            if (path, text) not in found:
                found.append((path, text))
    return found
