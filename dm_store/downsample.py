"""Downsampling a series to "every k-th row plus the last".

One rule for every reader of long series: keep the rows whose position (an iteration, or an
index) is a multiple of a stride ``k``, and always the last row -- the newest value, the live
edge of a running run. The store applies it in SQL (``iteration % k = 0 OR iteration =
last``), the dashboard to arrays it already holds (``every_kth``); multiples of ``2k`` are a
subset of those of ``k``, so a reader that doubles its stride keeps evenly spaced rows.

Plain numpy, no database: the dashboard's chart code uses it too.
"""

from __future__ import annotations

import math

import numpy as np


def every_kth(positions: np.ndarray, k: int) -> np.ndarray:
    """Indices of the rows to keep: those whose position is a multiple of ``k``, and the last.

    >>> every_kth(np.arange(1, 11), 4).tolist()  # iterations 4, 8 and the last (10)
    [3, 7, 9]
    >>> every_kth(np.arange(10), 3).tolist()  # positions 0, 3, 6, 9 (9 is the last too)
    [0, 3, 6, 9]
    """
    if k < 1:
        raise ValueError(f"stride: must be a positive integer, got {k}")
    keep = np.asarray(positions) % k == 0
    if len(keep):
        keep[-1] = True
    return np.flatnonzero(keep)


def kept_count(k: int, first: int, last: int) -> int:
    """At most how many rows of iterations ``first..last`` stride ``k`` keeps: the multiples
    of k in that range, plus ``last`` when it is not one.

    >>> kept_count(2, 2, 11)  # 2, 4, 6, 8, 10 and 11
    6
    """
    return last // k - (first - 1) // k + (last % k != 0)


def smallest_stride(count: int, limit: int | None, first: int, last: int) -> int:
    """The stride k that keeps at most ``limit`` of ``count`` rows with iterations in
    ``first..last``: the smallest k from ``(last - first + 1) / limit`` up for which the
    multiples of k AND the last row fit (``kept_count``; the last row may be one more than
    ``count / k``). Counted over the whole range, so it holds even if rows are missing.

    >>> smallest_stride(30_000, 2000, 1, 30_000), smallest_stride(10, 5, 2, 11)
    (15, 3)
    >>> smallest_stride(100, 2000, 1, 100), smallest_stride(10, None, 1, 10)
    (1, 1)
    >>> smallest_stride(10, 1, 5, 14)
    14
    >>> all(kept_count(smallest_stride(n, m, a, a + n - 1), a, a + n - 1) <= m
    ...     for n in range(1, 300) for m in range(1, 40) for a in (1, 2, 7, 999))
    True
    """
    if not limit or count <= limit:
        return 1
    if limit == 1:
        return last  # its only multiple in the range is the last row itself
    k = max(1, math.ceil((last - first + 1) / limit))
    # Ends by k = ceil(span / (limit - 1)): at most ceil(span / k) multiples, plus the last.
    while kept_count(k, first, last) > limit:
        k += 1
    return k


__all__ = ["every_kth", "kept_count", "smallest_stride"]
