"""What the Launch form does about label noise beyond the checks it shares with ``dm submit``.

The refusals themselves (symmetric or pair-flip noise at r = 0, a degenerate β, missing data
files) live in ``studio.submission``, which ``dm submit`` calls too, so the form and the
command refuse the same configs with the same message. The form adds one courtesy: choosing a
noise kind that takes a rate proposes ``PROPOSED_NOISE_RATE`` instead of leaving it at 0.
"""

from __future__ import annotations

from studio.submission import noise_takes_rate, refusals

# The rate the form proposes when a noise kind that takes one is chosen (a rate of 0 would
# corrupt nothing). 0.4 is the noise rate of the shipped digits configs.
PROPOSED_NOISE_RATE = 0.4

__all__ = ["PROPOSED_NOISE_RATE", "noise_takes_rate", "refusals"]
