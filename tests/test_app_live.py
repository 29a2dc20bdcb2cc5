"""app/live.py: a run polled while it trains stays on one uniform iteration grid.

The reference is the rule itself, applied to the whole series at once: after any sequence
of incremental reads, the kept iterations are exactly the multiples of the final stride
(plus the newest), the same rows a single read of the finished run on that grid returns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.charts import CurveStyle, lines_figure
from app.live import (
    FigureCache,
    LiveHistograms,
    LiveScalars,
    data_digest,
    grid_indices,
    lateness,
    paced_interval,
    rearm,
    stride_for,
    window_stride,
)


def read_after(total: np.ndarray, after: int, stride: int) -> np.ndarray:
    """What ``Store.scalars(after=..., stride=...)`` returns: multiples of the stride, and
    the newest row."""
    rows = total[total > after]
    if not len(rows):
        return rows
    keep = rows % stride == 0
    keep[-1] = True
    return rows[keep]


@pytest.mark.parametrize(("n", "tick", "limit"), [(100_000, 200, 3000), (7_777, 13, 100),
                                                  (50, 7, 100)])
def test_polling_a_long_run_keeps_every_part_of_it_evenly(n, tick, limit):
    live = LiveScalars(limit, stride_for(0, limit))
    for upto in range(tick, n + tick, tick):
        written = np.arange(1, min(upto, n) + 1)
        new = read_after(written, live.last, live.stride)
        live.append(pd.DataFrame({"iteration": new, "loss": 1.0 / new}))
    kept = live.frame["iteration"].to_numpy()
    k = live.stride
    expected = read_after(np.arange(1, n + 1), 0, k)
    assert kept.tolist() == expected.tolist()
    assert np.allclose(live.frame["loss"], 1.0 / kept)  # each row kept with its own values
    assert len(kept) <= 2 * limit + 1
    if n > 2 * limit:
        assert len(kept) > limit // 2  # thinned by doubling, not to a handful
    # Every tenth of the run is represented as densely as every other tenth.
    per_tenth = np.histogram(kept[:-1], bins=10, range=(0, n))[0]
    assert per_tenth.max() - per_tenth.min() <= 1


def test_first_read_of_a_long_run_on_its_grid_then_live():
    n, limit = 30_000, 3000
    live = LiveScalars(limit, stride_for(n, limit))
    assert live.stride == 16
    first = read_after(np.arange(1, n + 1), 0, live.stride)
    live.append(pd.DataFrame({"iteration": first}))
    assert len(live.frame) == len(first) <= 2 * limit
    more = read_after(np.arange(1, n + 501), live.last, live.stride)
    live.append(pd.DataFrame({"iteration": more}))
    kept = live.frame["iteration"].to_numpy()
    assert set(np.diff(kept[:-1])) == {16} and kept[-1] == n + 500


def test_histograms_on_the_same_grid_and_bins_change_restarts():
    rng = np.random.default_rng(0)
    hist = LiveHistograms(limit=8)
    counts = rng.integers(0, 9, size=(100, 5))
    for lo in range(0, 100, 9):
        it = np.arange(lo + 1, min(lo + 9, 100) + 1)
        new = read_after(it, hist.last, hist.stride)
        hist.append(new, counts[new - 1], counts[new - 1] * 2)
    assert hist.iterations.tolist() == read_after(np.arange(1, 101), 0, hist.stride).tolist()
    assert np.array_equal(hist.clean, counts[hist.iterations - 1])
    assert np.array_equal(hist.noisy, 2 * counts[hist.iterations - 1])
    hist.append(np.array([101]), np.zeros((1, 7)), np.zeros((1, 7)))  # a new bin count
    assert hist.iterations.tolist() == [101] and hist.clean.shape == (1, 7)


def test_stride_and_grid_rules():
    assert [stride_for(c, 10) for c in (0, 10, 11, 20, 21, 40, 41)] == [1, 1, 2, 2, 4, 4, 8]
    idx, k = grid_indices(np.arange(1, 101), 1, 10)
    assert k == 8 and np.arange(1, 101)[idx].tolist() == [*range(8, 97, 8), 100]
    assert grid_indices(np.zeros(0, dtype=int), 4, 10)[0].tolist() == []
    with pytest.raises(ValueError, match="limit"):
        stride_for(5, 0)


def test_a_burst_is_read_as_one_thinned_window_up_to_the_newest_row():
    limit = 100
    live = LiveScalars(limit)
    first = read_after(np.arange(1, 51), 0, 1)
    live.append(pd.DataFrame({"iteration": first}))
    newest = 5_050
    k = window_stride(live.stride, newest - live.last, limit)
    assert k == 64
    burst = read_after(np.arange(1, newest + 1), live.last, k)
    assert len(burst) <= limit + 1 and burst[-1] == newest
    live.append(pd.DataFrame({"iteration": burst}), stride=k)
    kept = live.frame["iteration"].to_numpy()
    assert live.stride == k and kept[-1] == newest
    assert kept[:-1].tolist() == list(range(k, newest, k))  # the old rows thinned to it too
    assert window_stride(8, 10, limit) == 8  # a small backlog keeps the grid it has


def test_ticks_are_paced_by_their_own_cost():
    """A tick that takes longer lengthens the interval (never shorter than three of its
    durations, so ticks cannot queue behind one another); a faster one shortens it again only
    once the interval is four times too long."""
    intervals = [paced_interval(t, 2.0, 16.0, 3.0) for t in (0.0, 0.5, 1.0, 2.0, 3.0, 100.0)]
    assert intervals == [2.0, 2.0, 4.0, 8.0, 16.0, 16.0]
    assert all(i >= min(3.0 * t, 16.0) for i, t in zip(intervals, (0.0, 0.5, 1.0, 2.0, 3.0, 100.0), strict=True))
    assert rearm(8.0, 4.0) and not rearm(4.0, 8.0) and rearm(2.0, 8.0) and not rearm(2.0, 2.0)


def test_a_late_timer_lengthens_the_interval_and_the_estimate_decays():
    """The browser's timer cannot fire while the page is busy drawing: a tick that came 5 s
    after the previous one on a 2 s timer means the browser needs about that long, so the
    interval grows past it; ticks on time let it shrink back, slowly."""
    late = lateness(5.0, 2.0, 0.0)
    assert late > 5.0 and paced_interval(0.1, 2.0, 16.0, 3.0, late) == 8.0
    for _ in range(10):
        late = lateness(8.0, 8.0, late)  # on time
    assert paced_interval(0.1, 2.0, 16.0, 3.0, late) == 2.0


def test_a_chart_is_built_again_only_when_its_data_changed():
    """The reference for "the same data": numpy's own array equality, dtype included."""
    built = []

    def chart(x, series, title, style=CurveStyle()):
        built.append(title)
        return lines_figure(x, series, title, style=style)

    cache = FigureCache()
    x, y = np.arange(1, 101), np.linspace(0.0, 1.0, 100)
    first = cache.figure("pmean", chart, x, {"clean": y}, "p")
    assert cache.figure("pmean", chart, x.copy(), {"clean": y.copy()}, "p") is first  # equal data
    np.testing.assert_array_equal(first.data[0].y, y)
    changed = y.copy()
    changed[37] += 1e-12  # one value of one series
    again = cache.figure("pmean", chart, x, {"clean": changed}, "p")
    assert again is not first and again.data[0].y[37] == changed[37]
    assert cache.figure("pmean", chart, x, {"clean": changed}, "p", style=CurveStyle(0.5)) is not again
    assert cache.figure("pmean", chart, x, {"corrupted": changed}, "p") is not again  # a series' name
    assert cache.figure("pmean", chart, x.astype(np.float64), {"corrupted": changed}, "p") is not again
    assert cache.figure("other", chart, x, {"clean": y}, "p") is not first  # one entry per chart
    assert cache.builds == len(built) == 6


def test_data_digest_refuses_what_it_cannot_compare():
    assert data_digest([1, 2], {"a": None}) == data_digest((1, 2), {"a": None})
    assert data_digest({"a": 1, "b": 2}) != data_digest({"b": 2, "a": 1})  # series are drawn in order
    assert data_digest(np.zeros((2, 3))) != data_digest(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="cannot digest a ndarray; allowed: numpy arrays of numbers"):
        data_digest(np.array([object()]))
    with pytest.raises(TypeError, match="cannot digest a set"):
        data_digest({1})
