"""The report's figures: PNG files beside report.md, drawn with matplotlib's Agg backend (no display).

Strategy:
- One function per figure, each taking the report's frames (runner/report/runs.py, runner/report.to_cells)
  and returning a Figure, or None when it has nothing to show (no capacity search, one users value).
  `draw_all` runs them one by one: a figure that fails is skipped with a line saying why, never
  costing the report (docs/design.md: the report never crashes on a partial run).
- One colour per server, the same in every figure (the four built-in servers always get the same
  ones); generator-bound numbers measure Locust, not the server, so they are drawn hatched or hollow
  and the legend says so.
- A cell (runs differing only in `run.repeat`) is drawn at its median with its 95% interval when it
  has one; a single run is drawn as its point.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: never a display, in CI or over ssh

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from runner.capacity import LOWER_BOUND  # noqa: E402
from runner.record import Run  # noqa: E402
from runner.report.columns import searched  # noqa: E402
from runner.report.scaling import scaling_table  # noqa: E402
from runner.report.timeline import read_timeline  # noqa: E402

_KNOWN = ("single", "thread", "process", "select", "epoll", "asyncio", "pool", "prefork")
_PALETTE = [plt.get_cmap("tab10")(i) for i in range(10)]
_BOUND = "generator-bound"
_VERDICTS = {  # capacity step verdict -> marker, words
    "ok": ("o", "within the SLO"),
    "knee": ("D", "knee: RPS stopped growing"),
    "slo-failures": ("X", "SLO breached: failures"),
    "slo-p99": ("^", "SLO breached: p99"),
    "generator-bound": ("s", "generator-bound: Locust was the limit"),
    "slo-throughput": ("v", "SLO breached: the server fell behind"),
    "slo-late": ("P", "SLO breached: sent late (every connection busy)"),
    "generator-late": ("h", "generator-late: Locust's schedule slipped"),
}
_HOLLOW = ("generator-bound", "generator-late")  # steps that measured Locust: drawn hollow
DPI = 100


class NotDrawn(Exception):
    """A figure that applies but has nothing readable to show; the message says why."""


@dataclass
class Figure:
    file: str  # beside report.md
    title: str
    caption: str


def colours(servers: list[str]) -> dict[str, Any]:
    """A colour per server: the built-in ones fixed, any other the next free colour, in order of appearance."""
    fixed = {name: _PALETTE[i] for i, name in enumerate(_KNOWN)}
    free = [c for c in _PALETTE if c not in [fixed[s] for s in servers if s in fixed]]
    return {s: fixed[s] if s in fixed else free.pop(0) if free else "grey" for s in dict.fromkeys(servers)}


def draw_all(root: Path, frame: pd.DataFrame, cells: pd.DataFrame, runs: list[Run]) -> tuple[list[Figure], list[str]]:
    """Draw every figure that applies into `root`; (figures drawn, one line per figure skipped and why)."""
    palette = colours([str(s) for s in frame["server"]])
    fixed = frame[~searched(frame)]  # capacity searches have figures of their own
    cells = cells[cells["cell"].isin(fixed["cell"])]
    drawers: list[tuple[str, Callable[[], Figure | None]]] = [
        ("rps.png", lambda: _rps(root, fixed, cells, palette)),
        ("latency.png", lambda: _latency(root, cells, palette)),
        ("tradeoff.png", lambda: _tradeoff(root, fixed, cells, palette)),
        ("timeline.png", lambda: _timeline(root, frame, palette)),
        ("users.png", lambda: _users(root, cells, palette)),
        ("scaling.png", lambda: _scaling(root, fixed, palette)),
        ("capacity.png", lambda: _capacity(root, runs, palette)),
        ("capacity-rate.png", lambda: _capacity_rate(root, runs, palette)),
        ("rates.png", lambda: _rates(root, frame, palette)),
    ]
    for name, _ in drawers:  # a figure from an earlier report of this directory would no longer match it
        (root / name).unlink(missing_ok=True)
    figures, skipped = [], []
    for name, draw in drawers:
        try:
            figure = draw()
        except NotDrawn as exc:
            skipped.append(f"{name} was not drawn: {exc}")
        except Exception as exc:  # one bad figure must not cost the report
            skipped.append(f"{name} was not drawn: {type(exc).__name__}: {exc}")
        else:
            if figure is not None:
                figures.append(figure)
        finally:
            plt.close("all")
    return figures, skipped


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _bound(flags: Any) -> bool:
    return isinstance(flags, str) and _BOUND in flags.split(",")


def _label(row: dict, several_groups: bool) -> str:
    server = row["server"].replace(" (", "\n(")  # "uvicorn (reference)" on two lines: neighbours never overlap
    return f"{server}\n{row['group']}".replace(", ", "\n") if several_groups and row["group"] else server


def _ordered(cells: pd.DataFrame) -> list[dict]:
    """Cells by group (first appearance), then RPS, highest first; cells without RPS last."""
    groups = list(dict.fromkeys(cells["group"].fillna("")))
    rows = cells.to_dict("records")
    return sorted(rows, key=lambda r: (groups.index(r["group"] or ""), _num(r["rps"]) is None, -(_num(r["rps"]) or 0)))


def _save(fig, root: Path, name: str) -> None:
    fig.tight_layout()
    # zlib level 1 instead of 6: files 10% larger (29 KB for 26 KB), 0.2 s less of a 4-figure report
    fig.savefig(root / name, dpi=DPI, pil_kwargs={"compress_level": 1})


def _log_ms(ax, fmt: str = "{:g}") -> None:
    """A log y axis labelled 2, 5, 10, 200 -- not 2x10^0 --, from the decade below the lowest point, so that the
    lowest points have a labelled tick under them (a p99 of 1.4 ms sat under the first label, 2)."""
    ax.set_yscale("log")
    low, _ = ax.get_ylim()
    if low > 0:
        ax.set_ylim(bottom=10 ** math.floor(math.log10(low)))

    def minor(value: float, _: object) -> str:  # every minor tick within one decade, else only 2s and 5s
        low, high = ax.get_ylim()
        return fmt.format(value) if (low > 0 and high / low < 10) or f"{value:.0e}"[0] in "25" else ""

    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt.format(value)))
    ax.yaxis.set_minor_formatter(FuncFormatter(minor))


def _bound_legend() -> Patch:
    return Patch(facecolor="white", edgecolor="black", hatch="//", label="hatched: generator-bound (measures Locust)")


def _rps(root: Path, frame: pd.DataFrame, cells: pd.DataFrame, palette: dict) -> Figure | None:
    rows = _ordered(cells)
    if not any(_num(r["rps"]) is not None for r in rows):
        return None
    several = cells["group"].fillna("").nunique() > 1
    repeated = bool((cells["n"].fillna(0) > 1).any())
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.5))
    for x, row in enumerate(rows):
        rps = _num(row["rps"])
        if rps is None:
            ax.text(x, 0, "no data", ha="center", va="bottom", fontsize=8, rotation=90)
            continue
        ax.bar(x, rps, color=palette[row["server"]], edgecolor="black", hatch="//" if _bound(row["flags"]) else None)
        low, high = _num(row["rps_low"]), _num(row["rps_high"])
        if low is not None and high is not None:
            ax.errorbar(x, rps, yerr=[[max(rps - low, 0)], [max(high - rps, 0)]], color="black", capsize=6, lw=1.5)
        ax.annotate(f"{rps:,.0f}", (x, high if high is not None else rps), textcoords="offset points", xytext=(0, 4),
                    ha="center", fontsize=8)  # fmt: skip
    for x, run_rps in enumerate(_run_values(frame, rows, "rps")):
        ax.scatter([x] * len(run_rps), run_rps, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(rows)), [_label(r, several) for r in rows], fontsize=8 if several else 10)
    ax.set_ylabel("requests per second (req/s)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    what = "bar: median of repeats; whisker: 95% interval of the mean; dots: runs" if repeated else "one run each"
    ax.set_title(f"Requests per second per server (higher is better)\n{what}", fontsize=10)
    handles = [_bound_legend()] if any(_bound(r["flags"]) for r in rows) else []
    if handles:  # below the tick labels, however many lines they have
        lines = max(_label(r, several).count("\n") + 1 for r in rows)
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.05 - 0.06 * lines),
                  fontsize=8, frameon=False)  # fmt: skip
    _save(fig, root, "rps.png")
    caption = "Requests per second, failed requests included, over the steady window; higher is better."
    if repeated:
        caption += (
            " Bars are medians; whiskers are the 95% interval of the mean (Student t: wide with few repeats); "
            "dots are the single runs."
        )
    return Figure("rps.png", "Requests per second per server", caption)


def _run_values(frame: pd.DataFrame, rows: list[dict], metric: str) -> list[list[float]]:
    """Per drawn cell, its complete runs' values when it has several: the dots over its bar."""
    complete = frame[~frame["partial"].astype(bool) & frame[metric].notna()]
    return [complete.loc[complete["cell"] == row["cell"], metric].astype(float).tolist() if (row["n"] or 0) > 1
            else [] for row in rows]  # fmt: skip


def _latency(root: Path, cells: pd.DataFrame, palette: dict) -> Figure | None:
    rows = [r for r in _ordered(cells) if _num(r["p50_ms"]) is not None]
    if not rows:
        return None
    several = cells["group"].fillna("").nunique() > 1
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.5))
    marks = (("p50_ms", "o", "p50"), ("p95_ms", "s", "p95"), ("p99_ms", "^", "p99"))
    for x, row in enumerate(rows):
        values = [(_num(row[c]), m) for c, m, _ in marks]
        known = [v for v, _ in values if v is not None]
        colour = palette[row["server"]]
        ax.plot([x, x], [min(known), max(known)], color=colour, lw=3, alpha=0.5)
        for value, marker in values:
            if value is not None:
                ax.scatter(x, value, marker=marker, s=60, color=colour, edgecolor="black", zorder=3)
        ax.annotate(f"{max(known):g} ms", (x, max(known)), textcoords="offset points", xytext=(8, 0), fontsize=8)
    _log_ms(ax)
    ax.set_ylabel("response time, ms (log scale)")
    labels = [_label(r, several) + ("\n(generator-bound)" if _bound(r["flags"]) else "") for r in rows]
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_xlim(-0.6, len(rows) + 0.1)
    ax.set_title("Response time percentiles per server (lower is better)", fontsize=10)
    handles = [Line2D([], [], marker=m, ls="", color="grey", markeredgecolor="black", label=w) for _, m, w in marks]
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14 if not several else -0.3),
              ncol=len(handles), frameon=False)  # fmt: skip
    _save(fig, root, "latency.png")
    caption = (
        "p50, p95 and p99 response times (medians over repeats), from an HDR histogram of every response "
        "time, to 3 significant digits; the number is p99."
    )
    return Figure("latency.png", "Response time percentiles per server", caption)


def _tradeoff(root: Path, frame: pd.DataFrame, cells: pd.DataFrame, palette: dict) -> Figure | None:
    runs = [r for r in frame.to_dict("records") if _num(r["rps"]) is not None and _num(r["p99_ms"]) is not None]
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for run in runs:
        hollow = _bound(run["flags"]) or bool(run["partial"])
        colour = palette[run["server"]]
        ax.scatter(run["rps"], run["p99_ms"], s=30, color=colour, alpha=0.6, facecolor="white" if hollow else colour)
    for row in cells.to_dict("records"):
        rps, p99 = _num(row["rps"]), _num(row["p99_ms"])
        if rps is not None and p99 is not None and (row["n"] or 0) > 1:
            ax.scatter(rps, p99, s=160, marker="*", color=palette[row["server"]], edgecolor="black", zorder=3)
    _log_ms(ax)
    ax.set_xlabel("requests per second (req/s) - higher is better")
    ax.set_ylabel("p99 response time, ms (log scale) - lower is better")
    ax.set_title("Throughput vs tail latency: best is bottom right", fontsize=10)
    handles = [Line2D([], [], marker="o", ls="", color=palette[s], label=s) for s in dict.fromkeys(frame["server"])]
    if (cells["n"].fillna(0) > 1).any():
        handles.append(Line2D([], [], marker="*", ls="", color="grey", markeredgecolor="black", markersize=12,
                              label="median of a cell's repeats"))  # fmt: skip
    if any(_bound(r["flags"]) or r["partial"] for r in runs):
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="white", markeredgecolor="black",
                              label="hollow: generator-bound or partial"))  # fmt: skip
    ax.legend(handles=handles, fontsize=8)
    _save(fig, root, "tradeoff.png")
    return Figure("tradeoff.png", "Throughput vs p99", "One dot per run; a server further right and lower does more, "
                  "faster.")  # fmt: skip


def _timeline(root: Path, frame: pd.DataFrame, palette: dict) -> Figure | None:
    series = []
    for run in frame.to_dict("records"):
        timeline = read_timeline(root / run["run"])
        if timeline is not None:
            series.append((run, timeline))
    if not series:
        return None
    series = [(run, timeline) for run, timeline in series if len(timeline.seconds) >= 2]
    if not series:
        raise NotDrawn("every run is too short for a line over time (under 2 whole seconds of samples)")
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    for run, timeline in series:
        style = ":" if _bound(run["flags"]) else "-"
        colour = palette[run["server"]]
        top.plot(timeline.seconds, timeline.rps, style, color=colour, alpha=0.8, lw=1.3, marker=".")
        at = timeline.p99_at if timeline.p99_at is not None else timeline.seconds
        bottom.plot(at, timeline.p99_ms, style, color=colour, alpha=0.8, lw=1.3, marker=".")
    sources = {timeline.source for _, timeline in series}
    p99 = "p99 of each second" if sources <= {"interval", "hdr"} else "p99 since the run started (cumulative)"
    if "cumulative" in sources and len(sources) > 1:
        p99 = "p99: of each second, or cumulative for runs without a progress file"
    top.set_ylabel("req/s (each second)")
    bottom.set_ylabel(f"{p99.split(':')[0]}, ms", fontsize=9)
    _log_ms(bottom)
    bottom.set_xlabel("seconds since Locust's test started (ramp-up included)")
    top.set_title(f"Requests per second and {p99}, one line per run", fontsize=10)
    handles = [Line2D([], [], color=palette[s], label=s) for s in dict.fromkeys(r["server"] for r, _ in series)]
    if any(_bound(r["flags"]) for r, _ in series):
        handles.append(Line2D([], [], color="black", ls=":", label="dotted: generator-bound"))
    top.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, root, "timeline.png")
    where = {
        "hdr": "RPS from each run's `locust_progress.jsonl`, p99 from each second's HDR histogram (microseconds, "
        "3 significant digits, every Locust process)",
        "interval": "from each run's `locust_progress.jsonl` (the last second's numbers, p99 in whole ms)",
        "cumulative": "from Locust's `locust_stats_history.csv`: RPS from its request counts, p99 cumulative",
    }
    caption = "Over time, whole run (ramp-up included); " + "; ".join(where[s] for s in sorted(sources)) + "."
    return Figure("timeline.png", "RPS and p99 over time", caption)


def _users(root: Path, cells: pd.DataFrame, palette: dict) -> Figure | None:
    """RPS and p99 against load.users, one line per server (and other conditions), when users were swept."""
    rows = [r for r in cells.to_dict("records") if _num(r["users"]) is not None and _num(r["rps"]) is not None]
    lines: dict[tuple, list[dict]] = {}
    for row in rows:
        rest = (row["server"], row["workload"], row["keepalive"], row["settings"])
        lines.setdefault(rest, []).append(row)
    if not any(len({r["users"] for r in line}) > 1 for line in lines.values()):
        return None
    workloads = len({key[1] for key in lines}) > 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for (server, workload, _, _), line in lines.items():
        line.sort(key=lambda r: r["users"])
        users = [r["users"] for r in line]
        label = f"{server} ({workload})" if workloads else server
        low = [r["rps"] - _num(r["rps_low"]) if _num(r["rps_low"]) is not None else 0 for r in line]
        high = [_num(r["rps_high"]) - r["rps"] if _num(r["rps_high"]) is not None else 0 for r in line]
        left.errorbar(users, [r["rps"] for r in line], yerr=[low, high], marker="o", capsize=3,
                      color=palette[server], label=label)  # fmt: skip
        right.plot(users, [_num(r["p99_ms"]) for r in line], marker="o", color=palette[server], label=label)
        bound = [r for r in line if _bound(r["flags"])]  # drawn hollow, as in the trade-off figure
        for ax, key in ((left, "rps"), (right, "p99_ms")):
            ax.scatter([r["users"] for r in bound], [_num(r[key]) for r in bound], s=40, zorder=3,
                       facecolor="white", edgecolor=palette[server])  # fmt: skip
    left.set(xlabel="users (load.users)", ylabel="requests per second (req/s)", title="Throughput vs users")
    right.set(xlabel="users (load.users)", ylabel="p99 response time, ms (log scale)", title="p99 vs users")
    _log_ms(right)
    left.set_ylim(bottom=0)
    handles, _ = left.get_legend_handles_labels()
    if any(_bound(r["flags"]) for r in rows):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="black",
                              label="hollow: generator-bound (measures Locust)"))  # fmt: skip
    left.legend(handles=handles, fontsize=8)
    _save(fig, root, "users.png")
    return Figure("users.png", "RPS and p99 vs users", "A users sweep: each point is a cell (median of its repeats).")


def _scaling(root: Path, frame: pd.DataFrame, palette: dict) -> Figure | None:
    """RPS and requests per CPU-second against the server's cores, a line per series, each beside its ideal (the
    rate on its fewest cores, times the cores), when cores were swept (runner/report/scaling.py)."""
    table = scaling_table(frame)
    if table.empty:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for series, points in table.groupby("series", sort=False):
        colour = palette.get(points["server"].iloc[0], "grey")
        cores = list(points["cores"])
        left.plot(cores, [_num(v) for v in points["rps"]], marker="o", color=colour, label=series)
        left.plot(cores, [_num(v) for v in points["ideal"]], linestyle=":", color=colour)
        right.plot(cores, [_num(v) for v in points["requests_per_cpu_s"]], marker="o", color=colour, label=series)
        shared = points[points["shared"]]
        left.scatter(shared["cores"], [_num(v) for v in shared["rps"]], s=60, zorder=3, facecolor="white",
                     edgecolor=colour)  # fmt: skip
    ticks = sorted(set(table["cores"]))
    left.set(xlabel="server cores (run.server_cores)", ylabel="requests per second (req/s)", xticks=ticks,
             title="Throughput vs cores (dotted: ideal, N x the rate on the fewest)")  # fmt: skip
    right.set(xlabel="server cores (run.server_cores)", ylabel="requests per CPU-second", xticks=ticks,
              title="What a request costs the server")  # fmt: skip
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    handles, _ = left.get_legend_handles_labels()
    if table["shared"].any():
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="black",
                              label="hollow: Locust shared the server's cores"))  # fmt: skip
    left.legend(handles=handles, fontsize=8)
    _save(fig, root, "scaling.png")
    return Figure("scaling.png", "Scaling with cores",
                  "A cores sweep: each point is the median of a server's runs on that many cores.")


def _capacity(root: Path, runs: list[Run], palette: dict) -> Figure | None:
    if not (searches := _searches(runs, "users")):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5))
    seen_verdicts: set[str] = set()
    for run in searches:
        steps = _steps(run, "users")
        colour = palette.get(run.server, "grey")
        users = [float(s["users"]) for s in steps]
        stop = run.capacity.get("stop_reason") or "?"
        best = _num(run.capacity.get("max_rps"))
        at = _num(run.capacity.get("users_at_max"))
        bound = "≥ " if stop in LOWER_BOUND else ""  # the search ran out before the server did: a lower bound
        label = f"{run.server}: max {bound}{best:,.0f} req/s at {at:g} users (stop: {stop})" if best is not None \
            and at is not None else f"{run.server}: no sustainable step (stop: {stop})"  # fmt: skip
        line = left.plot(users, [_num(s.get("rps")) for s in steps], color=colour, lw=1.5, label=label, alpha=0.85,
                         marker=".")  # a line under another still shows its points  # fmt: skip
        line[0].set_zorder(2 + searches.index(run) * 0.01)
        right.plot(users, [_num(s.get("p99_ms")) for s in steps], color=colour, lw=1.5, alpha=0.85)
        for step, x in zip(steps, users, strict=True):
            seen_verdicts.add(str(step.get("verdict")))
            ys = [(left, _num(step.get("rps"))), (right, _num(step.get("p99_ms")))]
            _verdict_markers(x, ys, str(step.get("verdict")), colour)
        if best is not None and at is not None:  # hollow when it is only a lower bound
            left.scatter(at, best, marker="*", s=350, color="white" if bound else colour, edgecolor=colour if bound
                         else "black", linewidths=1.5, zorder=4)  # fmt: skip
    left.set(xlabel="users (each step of the search)", ylabel="steady requests per second (req/s, log scale)",
             title="RPS per step (star: max sustainable; hollow: ≥, a lower bound)")  # fmt: skip
    _log_ms(left, "{:,.0f}")  # 95/s beside 16,000/s: on a linear axis the slow server lay flat on 0
    right.set(xlabel="users (each step of the search)", ylabel="p99 response time, ms (log scale)",
              title="Capacity search: p99 per step")  # fmt: skip
    _log_ms(right)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    _verdict_legend(right, seen_verdicts)
    _save(fig, root, "capacity.png")
    caption = "Each step of each server's capacity search; the star is its maximum sustainable RPS."
    return Figure("capacity.png", "Capacity search per server", caption)


def _searches(runs: list[Run], by: str) -> list[Run]:
    """The runs with a capacity search of this kind (by users: also older records, which have no "by")."""
    return [r for r in runs if isinstance(r.capacity.get("steps"), list) and r.capacity["steps"]
            and (r.capacity.get("by") or "users") == by]  # fmt: skip


def _steps(run: Run, by: str) -> list[dict]:
    """A search's steps that have a number for `by` (users or rate), in its order."""
    steps = [s for s in run.capacity["steps"] if isinstance(s, dict) and _num(s.get(by)) is not None]
    return sorted(steps, key=lambda s: float(s[by]))


def _verdict_markers(x: float, ys: list[tuple[Any, float | None]], verdict: str, colour: Any) -> None:
    """One step's marker on each (axis, y): its verdict's shape, hollow when the step measured Locust."""
    hollow = verdict in _HOLLOW
    for axis, y in ys:
        if y is not None:
            axis.scatter(x, y, marker=_VERDICTS.get(verdict, ("o", ""))[0], s=70, color=colour,
                         facecolor="white" if hollow else colour, edgecolor="black",
                         hatch="///" if hollow else None, zorder=3)  # fmt: skip


def _verdict_legend(ax, seen: set[str]) -> None:
    handles = [Line2D([], [], marker=_VERDICTS[v][0], ls="", color="grey", markeredgecolor="black",
                      markerfacecolor="white" if v in _HOLLOW else "grey", label=_VERDICTS[v][1])
               for v in _VERDICTS if v in seen]  # fmt: skip
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)


def _capacity_rate(root: Path, runs: list[Run], palette: dict) -> Figure | None:
    """The hockey stick: each rate search's steps, corrected p99 and answers/s against the offered rate."""
    if not (searches := _searches(runs, "rate")):
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5))
    seen: set[str] = set()
    low, top = float("inf"), 0.0
    for run in searches:
        steps = _steps(run, "rate")
        colour = palette.get(run.server, "grey")
        best, stop = _num(run.capacity.get("max_rate")), run.capacity.get("stop_reason") or "?"
        bound = "≥ " if stop in LOWER_BOUND else ""
        label = f"{run.server}: max {bound}{best:,.4g}/s (stop: {stop})" if best is not None else \
            f"{run.server}: no sustainable rate (stop: {stop})"  # fmt: skip
        rates = [float(s["rate"]) for s in steps]
        low, top = min([low, *rates]), max([top, *rates])
        left.plot(rates, [_num(s.get("p99_ms")) for s in steps], color=colour, lw=1.5, label=label)
        right.plot(rates, [_num(s.get("rps")) for s in steps], color=colour, lw=1.5)
        for step in steps:
            seen.add(str(step.get("verdict")))
            ys = [(left, _num(step.get("p99_ms"))), (right, _num(step.get("rps")))]
            _verdict_markers(float(step["rate"]), ys, str(step.get("verdict")), colour)
        if best is not None:
            left.axvline(best, color=colour, ls=":", lw=1)
    right.plot([low, top], [low, top], color="grey", ls="--", lw=1, label="answered = offered")
    left.set(xlabel="offered rate, requests/s (log scale)", ylabel="corrected p99, ms (log scale)",
             title="Capacity by rate: corrected p99 per step (dotted: max sustainable)")  # fmt: skip
    right.set(xlabel="offered rate, requests/s (log scale)", ylabel="answered, requests/s (log scale)",
              title="Capacity by rate: answers per step")  # fmt: skip
    right.set_yscale("log")
    for ax in (left, right):
        ax.set_xscale("log")
        for axis in (ax.xaxis, *([ax.yaxis] if ax is right else [])):
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in "25" else ""))
    _log_ms(left)
    left.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    _verdict_legend(right, seen)
    _save(fig, root, "capacity-rate.png")
    caption = (
        "Each step of each server's search by rate, in rate order: corrected p99 (from each request's intended send "
        "time) bends up where the server stops keeping up; the dotted line is its maximum sustainable rate."
    )
    return Figure("capacity-rate.png", "Capacity by rate: corrected p99 against offered rate", caption)


def _rates(root: Path, frame: pd.DataFrame, palette: dict) -> Figure | None:
    """The rate twin of the users figure: corrected p99 and achieved rate against load.arrival_rate, per series."""
    from runner.report.capacity import curve_table

    table = curve_table(frame, "arrival_rate")
    if table.empty:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for series, rows in table.groupby("series", sort=False):
        colour = palette.get(str(rows["server"].iloc[0]), "grey")
        rates = list(rows["arrival_rate"])
        left.plot(rates, [_num(v) for v in rows["p99_ms"]], marker="o", color=colour, label=f"{series}: corrected")
        left.plot(rates, [_num(v) for v in rows["uncorrected_p99_ms"]], marker=".", ls="--", color=colour,
                  label=f"{series}: uncorrected")  # fmt: skip
        right.plot(rates, [_num(v) for v in rows["rps"]], marker="o", color=colour, label=series)
    top = float(table["arrival_rate"].max())
    right.plot([0, top], [0, top], color="grey", ls="--", lw=1, label="achieved = offered")
    left.set(xlabel="offered rate, requests/s (load.arrival_rate)", ylabel="p99, ms (log scale)",
             title="p99 vs offered rate")  # fmt: skip
    right.set(xlabel="offered rate, requests/s (load.arrival_rate)", ylabel="answered, requests/s",
              title="Achieved vs offered rate")  # fmt: skip
    _log_ms(left)
    right.set_ylim(bottom=0)
    left.legend(fontsize=7)
    right.legend(fontsize=8)
    _save(fig, root, "rates.png")
    caption = "A rate sweep: each point is the median of the complete runs at that rate; dashed: uncorrected p99."
    return Figure("rates.png", "Corrected p99 and achieved rate vs offered rate", caption)


def markdown(figures: list[Figure], skipped: list[str]) -> str:
    """The figures as the report's opening section."""
    parts = [f"![{f.title}]({f.file})\n\n*{f.title}.* {f.caption}\n" for f in figures]
    parts += [f"- {line}\n" for line in skipped]
    return "\n".join(parts)
