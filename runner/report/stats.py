"""Statistics over repeats of one cell: median, a confidence interval of the mean, spread, and a
ranking that admits ties.

Strategy:
- The headline is the median (one slow repeat cannot drag it), the interval is Student t's 95%
  interval of the mean: with 3 to 5 repeats the normal 1.96 would claim far more certainty than
  the data has (t = 4.303 at n = 3). Quantiles are a table, so the report needs no scipy.
- Two cells whose intervals overlap are not ordered by the data: `tied_ranks` gives them one rank,
  marked "=" (competition ranking: 1, 2=, 2=, 4). Overlap is not transitive, so a tie group is
  measured against its first (leader) row, never chained: A~B and B~C with A, C apart is 1=, 1=, 3.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

# Two-sided 95% quantiles of Student's t, t(0.975, df), for df = 1..30; beyond, the normal 1.96.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

Interval = tuple[float, float]


def t_975(df: int) -> float:
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return T_975[df - 1] if df <= len(T_975) else 1.96


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def mean_interval(values: Sequence[float]) -> Interval | None:
    """95% confidence interval of the mean (Student t); None below two values. Never below zero: what is
    measured here (rates, times) cannot be negative, and with three spread repeats t's interval reached
    [-2,924, 4,433] requests/s."""
    n = len(values)
    if n < 2:
        return None
    mean, half = statistics.fmean(values), t_975(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return max(mean - half, 0.0) if min(values) >= 0 else mean - half, mean + half


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median: how far repeats disagree, relative to their typical value."""
    if len(values) < 2:
        return None
    mid = median(values)
    return (max(values) - min(values)) / mid if mid > 0 else None


def overlaps(a: Interval, b: Interval) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def tied_ranks(intervals: Sequence[Interval | None]) -> list[str]:
    """Rank labels for rows already in rank order ("1", "2=", "2=", "4"): competition ranking where a
    row shares the rank of the current tie group if its interval overlaps that of the group's FIRST
    (leader) row; otherwise it leads a new group, ranked by its position. Ties do not chain: [10, 12],
    [11, 13], [12.5, 14] is "1=", "1=", "3". None never ties."""
    ranks, tied, lead = [], [False] * len(intervals), 0
    for i, here in enumerate(intervals):
        leader = intervals[lead]
        if i > 0 and leader is not None and here is not None and overlaps(leader, here):
            tied[lead] = tied[i] = True
        else:
            lead = i
        ranks.append(lead + 1)
    return [f"{rank}{'=' if tie else ''}" for rank, tie in zip(ranks, tied, strict=True)]
