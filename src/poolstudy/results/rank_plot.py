"""The critical-difference-style rank figure (Demšar 2006, Fig. 1): variants placed on a mean-rank axis
(best on the left), bars joining variants that no pairwise test separates. The numbers and their
computation are :mod:`poolstudy.results.rank`."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from poolstudy.results.rank import Ranking

UNIT = 0.42  # inches per vertical data unit (a label row is 0.55 units)


def rank_figure(ranking: Ranking) -> Figure:
    """One axis of mean ranks 1..k; the better half of the variants labelled on the left, the rest on the
    right, each joined to its rank by an elbow line; the groups of :meth:`Ranking.groups` as thick bars."""
    order = ranking.variants
    k = len(order)
    groups = ranking.groups()
    left = order[: math.ceil(k / 2)]
    right = order[math.ceil(k / 2):]
    rows = max(len(left), len(right))
    label_top = -0.45 - 0.45 * len(groups) - 0.3  # data units: bars under the axis, then the label rows
    bottom = label_top - 0.55 * (rows - 1) - 0.45
    fig = Figure(figsize=(7.5, 0.5 + UNIT * (1.4 - bottom)), layout="constrained")
    ax = fig.subplots()
    lo, hi = 1, max(k, 2)
    ax.set_xlim(lo - 0.08 * (hi - lo) - 1.1, hi + 0.08 * (hi - lo) + 1.1)
    ax.set_ylim(bottom, 1.4)
    ax.axis("off")

    ax.plot([lo, hi], [0, 0], color="black", lw=1)  # the rank axis
    for tick in range(lo, hi + 1):
        ax.plot([tick, tick], [0, 0.15], color="black", lw=1)
        ax.text(tick, 0.3, str(tick), ha="center", va="bottom", fontsize=9)
    ax.text((lo + hi) / 2, 0.95, "mean rank (1 = best)", ha="center", va="bottom", fontsize=9)

    bar_rows = {}
    for i, group in enumerate(groups):  # bars first, just under the axis
        y = -0.45 - 0.45 * i
        bar_rows[tuple(group)] = y
        ranks = [ranking.mean_rank[v] for v in group]
        ax.plot([min(ranks) - 0.03, max(ranks) + 0.03], [y, y], color="black", lw=3.5, solid_capstyle="round")
    for side, names in (("left", left), ("right", right)):
        for i, name in enumerate(names if side == "left" else list(reversed(names))):
            rank = ranking.mean_rank[name]
            y = label_top - 0.55 * i
            x_end = lo - 0.15 if side == "left" else hi + 0.15
            ax.plot([rank, rank, x_end], [0, y, y], color="0.25", lw=0.9)
            ax.plot([rank], [0], "o", color="black", markersize=3.5)
            ax.text(x_end + (-0.08 if side == "left" else 0.08), y, f"{name} ({rank:.2f})",
                    ha="right" if side == "left" else "left", va="center", fontsize=9)
    fig.suptitle(f"Mean rank over {len(ranking.panels)} datasets; bars: not separated "
                 f"(Holm-adjusted Welch, α = {ranking.alpha:g})", fontsize=10)
    return fig
