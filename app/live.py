"""A run's series read incrementally while it trains, kept on one uniform iteration grid.

The monitor page polls the store every few seconds for the rows after the last iteration it
has. What accumulates must stay within a budget, and thinning it must not favour the recent
past: halving the whole array each time it overflows would thin the oldest rows again and
again (after a long run, the first tenth of training kept a single point). Instead every
kept row sits on a grid of multiples of a ``stride`` (and the newest row, the live edge, is
kept as well); when the rows overflow twice the budget the stride doubles, and since the
multiples of ``2k`` are a subset of those of ``k``, old and new rows stay evenly spaced. The
store applies the same grid in SQL (``Store.scalars(..., stride=k)``), so only those rows
cross the wire.

A page that fell behind (a burst of rows, a page opened half-way through a run) must not
replay the backlog in order: each read covers everything up to the newest row, on a stride
coarse enough that at most a budget of rows comes back (``window_stride``). The kept rows
are thinned to that stride as well, so the grid stays uniform and the work of one read is
bounded however far behind the page was.

Every tick sends each chart again, and Streamlit gives a chart whose figure changed a new
identity: the browser drops it and draws it from scratch. A chart whose data did not change
must therefore be sent as the very same figure, and need not be built again:
``FigureCache`` keeps each chart's last figure with a digest of what it was built from.

Plain data and numpy; no Streamlit, so the logic is tested on its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from dm_store.downsample import every_kth

__all__ = ["FigureCache", "LiveHistograms", "LiveScalars", "data_digest", "grid_indices", "lateness",
           "paced_interval", "rearm", "stride_for", "window_stride"]

Built = TypeVar("Built")


def stride_for(count: int, limit: int) -> int:
    """The smallest power of two ``k`` with ``count / k <= limit`` (1 when ``count <= limit``).

    >>> stride_for(100, 3000), stride_for(30_000, 3000), stride_for(3001, 3000)
    (1, 16, 2)
    """
    if limit < 1:
        raise ValueError(f"limit: must be at least 1, got {limit}")
    ratio = math.ceil(max(count, 0) / limit)
    return 1 if ratio <= 1 else 1 << (ratio - 1).bit_length()


def window_stride(stride: int, count: int, budget: int) -> int:
    """The stride for reading ``count`` new rows in one go, at most ``budget`` of them (and
    the newest): the current ``stride``, or a coarser power of two when the backlog is large.
    Both are powers of two, so the multiples of the larger are a subset of the smaller's.

    >>> window_stride(1, 500, 3000), window_stride(1, 5000, 3000), window_stride(8, 5000, 3000)
    (1, 2, 8)
    """
    return max(stride, stride_for(count, budget))


def paced_interval(tick_s: float, shortest: float, longest: float, pace: float,
                   late_s: float = 0.0) -> float:
    """Seconds between two ticks of a live page: ``pace`` times the last tick's duration on
    the server, and at least ``late_s`` (what the browser needs, ``lateness``), rounded up to
    ``shortest`` times a power of two, at most ``longest``. Rounding keeps small changes in a
    tick's cost from changing the interval.

    >>> [paced_interval(t, 2.0, 16.0, 3.0) for t in (0.1, 0.7, 1.0, 2.5, 60.0)]
    [2.0, 4.0, 4.0, 8.0, 16.0]
    >>> paced_interval(0.1, 2.0, 16.0, 3.0, late_s=5.0)
    8.0
    """
    interval = shortest
    while interval < min(max(pace * tick_s, late_s), longest):
        interval *= 2
    return min(interval, longest)


def lateness(gap: float, armed: float, previous: float) -> float:
    """How long the browser needs between two ticks, judged from the ``gap`` between the
    last two ticks of a timer armed every ``armed`` seconds. The browser's timer cannot fire
    while the page is busy drawing, so a gap well past ``armed`` means the browser took
    that long: a quarter more than it is needed. A tick on time lets the estimate decay.

    >>> lateness(5.0, 2.0, 0.0), lateness(2.1, 2.0, 6.25), lateness(2.1, 2.0, 0.0)
    (6.25, 5.0, 0.0)
    """
    if gap > 1.25 * armed:
        return max(1.25 * gap, 0.8 * previous)
    return 0.8 * previous


def rearm(wanted: float, armed: float) -> bool:
    """Whether a timer running every ``armed`` seconds must be replaced by one of ``wanted``:
    at once when it is too short (ticks would queue behind one another), only when it is
    four times too long otherwise (so the interval does not swing back and forth).

    >>> rearm(4.0, 2.0), rearm(2.0, 4.0), rearm(2.0, 8.0)
    (True, False, True)
    """
    return wanted > armed or wanted * 4 <= armed


def grid_indices(iterations: np.ndarray, stride: int, limit: int) -> tuple[np.ndarray, int]:
    """Indices of the rows to keep and the stride, doubled until at most ``2 * limit`` rows
    remain: rows whose iteration is a multiple of the stride, and the newest row.

    >>> idx, k = grid_indices(np.arange(1, 11), 1, 2)  # 10 rows, at most 4 kept
    >>> k, np.arange(1, 11)[idx].tolist()
    (4, [4, 8, 10])
    """
    iterations = np.asarray(iterations)
    while True:
        idx = every_kth(iterations, stride)
        if len(idx) <= 2 * limit:
            return idx, stride
        stride *= 2


@dataclass
class LiveScalars:
    """Per-iteration scalars of one run (a frame with an ``iteration`` column) on a grid."""

    limit: int
    stride: int = 1
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def last(self) -> int:
        """The newest iteration held (0 before the first read)."""
        return int(self.frame["iteration"].iloc[-1]) if len(self.frame) else 0

    def append(self, new: pd.DataFrame, stride: int | None = None) -> None:
        """Add rows read after :attr:`last`, read with ``stride`` (default: :attr:`stride`;
        a coarser one from ``window_stride`` thins the kept rows to it too)."""
        if not len(new):
            return
        self.stride = max(self.stride, stride or 1)
        frame = pd.concat([self.frame, new], ignore_index=True) if len(self.frame) else new
        idx, self.stride = grid_indices(frame["iteration"].to_numpy(), self.stride, self.limit)
        self.frame = frame.iloc[idx].reset_index(drop=True)


@dataclass
class LiveHistograms:
    """Per-iteration ``p_i`` histograms of one run (clean and corrupted counts) on a grid."""

    limit: int
    stride: int = 1
    iterations: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    clean: np.ndarray | None = None
    noisy: np.ndarray | None = None

    @property
    def last(self) -> int:
        return int(self.iterations[-1]) if len(self.iterations) else 0

    def append(self, iterations: np.ndarray, clean: np.ndarray, noisy: np.ndarray,
               stride: int | None = None) -> None:
        """Add histograms read after :attr:`last` with ``stride`` (as ``LiveScalars.append``);
        a different bin count starts afresh."""
        if not len(iterations):
            return
        self.stride = max(self.stride, stride or 1)
        if self.clean is None or self.clean.shape[1] != clean.shape[1]:
            it, c, n = iterations, clean, noisy
        else:
            it = np.concatenate([self.iterations, iterations])
            c, n = np.concatenate([self.clean, clean]), np.concatenate([self.noisy, noisy])
        idx, self.stride = grid_indices(it, self.stride, self.limit)
        self.iterations, self.clean, self.noisy = it[idx], c[idx], n[idx]


def _feed(h: Any, value: Any) -> None:
    """Add ``value`` to the digest ``h``, tagged with its kind so that different values
    never feed the same bytes (``[1, 2]`` and ``(1, 2)`` aside: both are a sequence)."""
    if isinstance(value, np.ndarray) and value.dtype != object:  # an object array's bytes are pointers
        h.update(f"array {value.dtype.str} {value.shape}|".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif value is None or isinstance(value, bool | int | float | str | np.generic):
        h.update(f"{type(value).__name__} {value!r}|".encode())
    elif isinstance(value, Mapping):
        h.update(f"mapping {len(value)}|".encode())
        for k, v in value.items():  # in order: a chart's series are drawn in order
            _feed(h, k)
            _feed(h, v)
    elif isinstance(value, list | tuple):
        h.update(f"sequence {len(value)}|".encode())
        for v in value:
            _feed(h, v)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"{type(value).__qualname__}|".encode())
        for f in dataclasses.fields(value):
            _feed(h, f.name)
            _feed(h, getattr(value, f.name))
    else:
        raise TypeError(f"data_digest: cannot digest a {type(value).__name__}; allowed: numpy "
                        "arrays of numbers, numbers, strings, None, mappings, sequences and "
                        "dataclasses of these")


def data_digest(*values: Any) -> str:
    """A digest of ``values`` (arrays by dtype, shape and bytes): equal for equal data.

    >>> a = data_digest(np.arange(3), {"title": "x"})
    >>> a == data_digest(np.arange(3), {"title": "x"}), a == data_digest(np.arange(4), {"title": "x"})
    (True, False)
    >>> data_digest(np.arange(3)) == data_digest(np.arange(3.0))  # another dtype: other data
    False
    """
    h = hashlib.blake2b(digest_size=16)
    for value in values:
        _feed(h, value)
    return h.hexdigest()


@dataclass
class FigureCache:
    """Each chart's last figure, kept with a digest of the arguments it was built from.

    ``figure(key, build, *args, **kwargs)`` returns the kept figure when the arguments are
    the same data as last time, and builds it again otherwise. ``builds`` counts the
    figures built (not those reused).

    >>> cache = FigureCache()
    >>> first = cache.figure("acc", lambda x: {"data": x.tolist()}, np.arange(3))
    >>> cache.figure("acc", lambda x: {"data": x.tolist()}, np.arange(3)) is first, cache.builds
    (True, 1)
    >>> cache.figure("acc", lambda x: {"data": x.tolist()}, np.arange(4)), cache.builds
    ({'data': [0, 1, 2, 3]}, 2)
    """

    kept: dict[str, tuple[str, Any]] = field(default_factory=dict)
    builds: int = 0

    def figure(self, key: str, build: Callable[..., Built], *args: Any, **kwargs: Any) -> Built:
        digest = data_digest(getattr(build, "__qualname__", repr(build)), args, kwargs)
        kept = self.kept.get(key)
        if kept is not None and kept[0] == digest:
            return kept[1]
        built = build(*args, **kwargs)
        self.builds += 1
        self.kept[key] = (digest, built)
        return built
