"""Charts as inline SVG strings, drawn with matplotlib's object API (no pyplot, no display).

Text stays text (``svg.fonttype: none``) and is escaped by matplotlib's SVG writer; mathtext is
off so a ``$`` in a label is just a dollar. Each chart gets its own hash salt so ids inside
several SVGs inlined in one page are deterministic and do not collide.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from harness.checker import Run
from harness.history.records import Fault, Observation
from harness.report.history import Loaded

# Okabe-Ito, a palette readable with every common colour-vision deficiency; each meaning
# also has its own hatching, marker or line style so that none rests on hue alone.
OKABE_ITO = {
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
}
#: run ending -> (label, colour, hatch)
RUN_STYLES: dict[str, tuple[str, str, str | None]] = {
    "succeeded": ("run succeeded", OKABE_ITO["green"], None),
    "retry": ("run failed, retry scheduled (backoff)", OKABE_ITO["orange"], ".."),
    "requeued": ("run re-queued (stalled-job sweep or shutdown)", OKABE_ITO["sky"], "//"),
    "failed": ("run failed for good", OKABE_ITO["vermillion"], "xx"),
    "open": ("run never ended", OKABE_ITO["purple"], "\\\\"),
    "overlapped": ("run overlapped another", OKABE_ITO["black"], "++"),
}
FAULT_HATCHES = ("////", "\\\\", "xx", "..", "||", "--")
#: More fault windows than this in one scenario get a lane per target under the jobs.
LANES_FROM = 2
PASS, FAIL, NEUTRAL = OKABE_ITO["green"], OKABE_ITO["vermillion"], "#6e7781"
_RC: dict[str, Any] = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}


def _rc(extra: dict[str, Any] | None = None) -> Any:
    """``mpl.rc_context`` with the report's style (typed loosely: matplotlib's stubs want
    literal keys)."""
    params: Any = {**_RC, **(extra or {})}
    return mpl.rc_context(params)


def to_svg(fig: Figure, chart_id: str, narrow: bool = False) -> str:
    """Serialise ``fig`` to an ``<svg>`` element (no XML prolog) ready to inline in HTML."""
    buf = io.StringIO()
    with _rc({"svg.hashsalt": chart_id}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    # Scale with the page: drop the fixed pt size, keep the viewBox.
    text = re.sub(r'<svg([^>]*?) width="[^"]+" height="[^"]+"', r"<svg\1", text, count=1)
    text = _namespace_ids(text, chart_id)
    cls = "chart narrow" if narrow else "chart"
    return text.replace("<svg", f'<svg id="{chart_id}" role="img" class="{cls}"', 1)


def _namespace_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and its ``url(#…)`` / ``href="#…"`` references) with ``prefix``:
    matplotlib numbers groups ``figure_1``, ``axes_1``… in every SVG, and ids must be unique
    in the page that inlines them all."""
    ids = set(re.findall(r'\bid="([^"]+)"', svg))
    if not ids:
        return svg

    def sub(match: re.Match[str]) -> str:
        head, name, tail = match.group(1), match.group(2), match.group(3)
        return f"{head}{prefix}-{name}{tail}" if name in ids else match.group(0)

    svg = re.sub(r'(\bid=")([^"]+)(")', sub, svg)
    svg = re.sub(r"(url\(#)([^)]+)(\))", sub, svg)
    return re.sub(r'(href="#)([^"]+)(")', sub, svg)


def _figure(width: float, height: float) -> Figure:
    with _rc():
        return Figure(figsize=(width, height), layout="constrained")


def run_style(run: Run) -> str:
    """The :data:`RUN_STYLES` key of a run, from the checker's own flags."""
    if run.overlapped:
        return "overlapped"
    if run.end_type is None:
        return "open"
    if run.recovered or run.aborted:
        return "requeued"
    if run.end_type == "deferred_for_retry":
        return "retry"
    return "failed" if run.end_type in ("failed", "aborted") else "succeeded"


def timeline_chart(
    loaded: Loaded,
    chart_id: str,
    highlight: Collection[object] = (),
    link: Callable[[int], str] | None = None,
) -> str | None:
    """Fault windows (hatched, labelled), each submitted job's runs as bars (the checker's runs),
    the SUT's periodic jobs apart in grey, cumulative counts, and ``/health`` answers.

    Jobs in ``highlight`` (lost ones) get a cross and a bold label; ``link(job_id)`` makes each
    job's label a link (to its story).
    """
    runs = {job_id: r for job_id, r in loaded.runs.items() if r}
    h = loaded.history
    faults = h.faults
    if not runs and not h.submits and not faults:
        return None
    ours = loaded.submitted or set(runs)
    t0, t_end = loaded.t0, loaded.t_end
    first = min((r.start for rs in runs.values() for r in rs), default=t0)
    left = min(0.0, first - t0)  # the SUT's own jobs may run before the scenario starts
    span = max(t_end - t0 - left, 1e-3)
    own = sorted({j for j in runs if j in ours} | {j for j in highlight if isinstance(j, int)})
    periodic_names = sorted({loaded.task_name(j) or "other" for j in runs if j not in ours})
    rows_own = {j: i for i, j in enumerate(own)}
    rows_periodic = {name: i for i, name in enumerate(periodic_names)}
    health = [o for o in h.observations("health_status")]
    # one lane per fault target (each worker, the API, PostgreSQL, each link) once faults
    # overlap: a random schedule's windows stay readable
    lanes = sorted({f.target for f in faults}) if len(faults) > LANES_FROM else []
    height = min(1.2 + 0.2 * len(own), 9.0)
    ratios = [height]
    if lanes:
        ratios.append(0.35 + 0.25 * len(lanes))
    if periodic_names:
        ratios.append(0.35 + 0.22 * len(periodic_names))
    ratios.append(1.5)
    if health:
        ratios.append(0.6)
    with _rc():
        fig = _figure(11, sum(ratios) + 0.6)
        axes = list(fig.subplots(len(ratios), 1, sharex=True, height_ratios=ratios))
        top = axes[0]
        rest = axes[1:]
        lanes_ax = rest.pop(0) if lanes else None
        periodic_ax = rest.pop(0) if periodic_names else None
        counts_ax = rest[0]
        seen: set[str] = set()
        for job_id, job_runs in runs.items():
            mine = job_id in ours
            ax = top if mine else periodic_ax
            if ax is None:
                continue
            y = rows_own[job_id] if mine else rows_periodic[loaded.task_name(job_id) or "other"]
            for run in job_runs:
                end = run.end if run.end is not None else t_end
                key = run_style(run) if mine else "periodic"
                _label, colour, hatch = RUN_STYLES.get(key, ("periodic", "#bfc5cc", None))
                if mine:
                    seen.add(key)
                ax.broken_barh(
                    [(run.start - t0, max(end - run.start, span / 800))],
                    (y - 0.36, 0.72),
                    facecolors=colour if mine else "#d0d7de",
                    edgecolors="#24292f" if hatch else "none",
                    hatch=hatch,
                    linewidth=0.4,
                )
        for lost_id in highlight:
            if isinstance(lost_id, int) and lost_id in rows_own:
                top.plot([t_end - t0], [rows_own[lost_id]], marker="X", color=FAIL, markersize=8)
        kinds: dict[str, str] = {}
        label_tf = blended_transform_factory(top.transData, top.transAxes)
        for n, fault in enumerate(faults):
            end = fault.end if fault.end is not None else t_end
            kind = fault.kind_
            hatch = kinds.setdefault(kind, FAULT_HATCHES[len(kinds) % len(FAULT_HATCHES)])
            for ax in axes:
                ax.axvspan(
                    fault.start - t0,
                    end - t0,
                    facecolor="#f6f8fa",
                    edgecolor="#8c959f",
                    hatch=hatch,
                    linewidth=0,
                    alpha=0.6,
                    zorder=0,
                )
                ax.axvline(fault.start - t0, color="#24292f", linewidth=0.7, linestyle="--")
            top.text(
                fault.start - t0,
                1.005 + 0.06 * (n % 2),
                f"{kind} {fault.target}".strip(),
                transform=label_tf,
                fontsize=7,
                color="#24292f",
                clip_on=False,
                va="bottom",
            )
        top.set_ylim(-0.8, max(len(own), 1) - 0.2)
        top.invert_yaxis()
        if len(own) <= 40:
            top.set_yticks(range(len(own)), [str(j) for j in own])
            for tick, job_id in zip(top.get_yticklabels(), own, strict=True):
                if link is not None:
                    tick.set_url(link(job_id))
                if job_id in highlight:
                    tick.set_color(FAIL)
                    tick.set_fontweight("bold")
        else:
            top.set_yticks([])
        top.set_ylabel(f"submitted jobs ({len(own)})")
        handles: list[Any] = [
            Patch(facecolor=RUN_STYLES[k][1], hatch=RUN_STYLES[k][2], label=RUN_STYLES[k][0])
            for k in RUN_STYLES
            if k in seen
        ]
        handles += [
            Patch(facecolor="#f6f8fa", edgecolor="#8c959f", hatch=hatch, label=f"fault: {k}")
            for k, hatch in kinds.items()
        ]
        if highlight:
            handles.append(
                Line2D([], [], marker="X", color=FAIL, linestyle="none", label="lost job")
            )
        if handles:
            top.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(1.0, 1.0),
                fontsize=8,
                frameon=False,
            )
        if lanes_ax is not None:
            _fault_lanes(lanes_ax, faults, lanes, t0, t_end)
        if periodic_ax is not None:
            periodic_ax.set_ylim(-0.8, len(periodic_names) - 0.2)
            periodic_ax.invert_yaxis()
            periodic_ax.set_yticks(range(len(periodic_names)), periodic_names, fontsize=7)
            for tick in periodic_ax.get_yticklabels():
                tick.set_color(NEUTRAL)
            periodic_ax.set_ylabel("internal\nperiodic", fontsize=7, color=NEUTRAL)
        _cumulative(counts_ax, loaded, t0, ours)
        if health:
            _health(axes[-1], health, t0)
        axes[-1].set_xlim(left, left + span * 1.01)
        axes[-1].set_xlabel("seconds since the scenario started")
        return to_svg(fig, chart_id)


def _fault_lanes(
    ax: Any, faults: Sequence[Fault], lanes: Sequence[str], t0: float, t_end: float
) -> None:
    """Each fault as a labelled bar in its target's lane."""
    rows = {target: i for i, target in enumerate(lanes)}
    for fault in faults:
        end = fault.end if fault.end is not None else t_end
        y = rows[fault.target]
        ax.broken_barh(
            [(fault.start - t0, max(end - fault.start, 0.01))],
            (y - 0.35, 0.7),
            facecolors="#ffd8b5",
            edgecolors="#953800",
            linewidth=0.6,
        )
        ax.text(fault.start - t0, y, f" {fault.kind_}", fontsize=6.5, va="center", clip_on=True)
    ax.set_ylim(-0.8, len(lanes) - 0.2)
    ax.invert_yaxis()
    ax.set_yticks(range(len(lanes)), list(lanes), fontsize=7)
    ax.set_ylabel("faults by\ntarget", fontsize=7)


def _cumulative(ax: Any, loaded: Loaded, t0: float, ours: Collection[int]) -> None:
    """Cumulative counts (submitted, succeeded, failed for good): exact on small runs, where
    rate bins would turn 2 jobs into "8 jobs/s"."""
    events = [e for e in loaded.history.events if e.job_id in ours]
    series = {
        "submitted": ([s.t_invoke for s in loaded.history.submits], "-", "o"),
        "succeeded": ([e.at for e in events if e.type == "succeeded"], "--", "^"),
        "failed for good": ([e.at for e in events if e.type == "failed"], ":", "v"),
    }
    colours = {"submitted": OKABE_ITO["blue"], "succeeded": PASS, "failed for good": FAIL}
    for name, (times, style, marker) in series.items():
        if not times:
            continue
        xs = sorted(t - t0 for t in times)
        ys = list(range(1, len(xs) + 1))
        ax.step(
            xs,
            ys,
            where="post",
            color=colours[name],
            linestyle=style,
            linewidth=1.4,
            marker=marker if len(xs) <= 40 else None,
            markersize=3.5,
            label=f"{name} ({len(xs)})",
        )
    ax.set_ylabel("jobs so far")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _health(ax: Any, samples: Sequence[Observation], t0: float) -> None:
    """``/health`` answers as a strip: 200 a tick, another status a cross, no answer a ring."""
    groups = (
        ("/health 200", lambda v: v == 200, "|", PASS, 120),
        ("/health not 200", lambda v: v is not None and v != 200, "x", FAIL, 40),
        ("/health no answer", lambda v: v is None, "o", "#24292f", 30),
    )
    for label, keep, marker, colour, size in groups:
        xs = [o.t - t0 for o in samples if keep(o.value)]
        if xs:
            ax.scatter(
                xs,
                [0] * len(xs),
                marker=marker,
                s=size,
                color=colour,
                label=label,
                facecolors="none" if marker == "o" else colour,
            )
    ax.set_yticks([])
    ax.set_ylabel("/health", rotation=0, ha="right", va="center")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.2), fontsize=8, frameon=False)


def _is_num(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def delay_band(entry: Mapping[str, Any], early_tolerance: float = 0.0) -> tuple[float, float]:
    """The accepted range for one observed retry delay, as the checker's retry_schedule has it:
    ``[expected - early_tolerance, expected + tolerance]`` (``lower``/``upper`` win if given)."""
    expected = float(entry["expected"])
    tol = float(entry.get("tolerance") or 0.0)
    early = (
        float(entry["early_tolerance"])
        if _is_num(entry.get("early_tolerance"))
        else (early_tolerance)
    )
    lo = float(entry["lower"]) if _is_num(entry.get("lower")) else expected - early
    hi = float(entry["upper"]) if _is_num(entry.get("upper")) else expected + tol
    return lo, hi


def backoff_chart(
    delays: Sequence[Mapping[str, Any]], chart_id: str, early_tolerance: float = 0.0
) -> str | None:
    """Observed retry delays per retry number against the formula and its tolerance band."""
    points = [d for d in delays if _is_num(d.get("observed")) and _is_num(d.get("expected"))]
    if not points:
        return None
    with _rc():
        fig = _figure(7.5, 3.4)
        ax = fig.subplots()
        by_run: dict[float, list[Mapping[str, Any]]] = {}
        for i, d in enumerate(points):
            k = float(d["run"]) if _is_num(d.get("run")) else float(i + 1)
            by_run.setdefault(k, []).append(d)
        ks = sorted(by_run)
        lows = [min(delay_band(d, early_tolerance)[0] for d in by_run[k]) for k in ks]
        highs = [max(delay_band(d, early_tolerance)[1] for d in by_run[k]) for k in ks]
        expected = [sum(float(d["expected"]) for d in by_run[k]) / len(by_run[k]) for k in ks]
        for i, k in enumerate(ks):
            ax.fill_between(
                [k - 0.38, k + 0.38],
                lows[i],
                highs[i],
                color=PASS,
                alpha=0.15,
                linewidth=0,
                label="accepted range" if i == 0 else None,
            )
            ax.hlines(
                expected[i],
                k - 0.38,
                k + 0.38,
                color=NEUTRAL,
                linewidth=1.5,
                label="formula min(base·2^(k-1), max)" if i == 0 else "_nolegend_",
            )
        ax.plot(ks, expected, color=NEUTRAL, linestyle=":", linewidth=0.8)
        jobs = sorted({str(d.get("job_id")) for d in points})
        offset = {
            j: (i - (len(jobs) - 1) / 2) * min(0.3 / max(len(jobs), 1), 0.08)
            for i, j in enumerate(jobs)
        }
        for ok in (True, False):
            xs, ys = [], []
            for k in ks:
                for d in by_run[k]:
                    lo, hi = delay_band(d, early_tolerance)
                    if (lo <= float(d["observed"]) <= hi) == ok:
                        xs.append(k + offset[str(d.get("job_id"))])
                        ys.append(float(d["observed"]))
            if xs:
                ax.scatter(
                    xs,
                    ys,
                    s=18,
                    color=PASS if ok else FAIL,
                    marker="o" if ok else "X",
                    zorder=3,
                    label="observed (within)" if ok else "observed (outside)",
                )
        ax.set_xticks(ks, [f"{k:g}" for k in ks])
        ax.set_xlabel("delay after failed run k")
        ax.set_ylabel("delay before run (s)")
        ax.set_title(f"Retry delays: {len(points)} observed across {len(jobs)} job(s)")
        ax.legend(fontsize=8, frameon=False, loc="upper left")
        return to_svg(fig, chart_id, narrow=True)


def recovery_chart(recoveries: Sequence[Mapping[str, Any]], chart_id: str) -> str | None:
    """Each recovery's latency as a bar with its budget as a tick; red when over budget.

    A job that never ran again (latency null) gets a red hatched bar up to its budget.
    """
    recs = [r for r in recoveries if _is_num(r.get("latency")) or _is_num(r.get("budget"))]
    if not recs:
        return None
    with _rc():
        fig = _figure(7.5, 1.3 + 0.3 * len(recs))
        ax = fig.subplots()
        ys = list(range(len(recs)))
        for y, r in zip(ys, recs, strict=True):
            budget = float(r["budget"]) if _is_num(r.get("budget")) else None
            if not _is_num(r.get("latency")):
                ax.barh(y, budget or 0.0, color="none", edgecolor=FAIL, hatch="///", height=0.6)
                ax.text(budget or 0.0, y, "  never ran again", va="center", color=FAIL)
                continue
            latency = float(r["latency"])
            colour = NEUTRAL if budget is None else PASS if latency <= budget else FAIL
            over = budget is not None and latency > budget
            ax.barh(y, latency, color=colour, height=0.6, hatch="xx" if over else None)
            if over:
                ax.text(latency, y, "  over budget", va="center", color=FAIL)
        budgets = [
            (y, float(r["budget"]))
            for y, r in zip(ys, recs, strict=True)
            if _is_num(r.get("budget"))
        ]
        if budgets:
            ax.scatter(
                [b for _, b in budgets],
                [y for y, _ in budgets],
                marker="|",
                s=260,
                color="#24292f",
                linewidths=2.5,
                zorder=3,
                label="budget",
            )
            ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        labels = [
            f"{r.get('what') or 'recovery'}" + (f" (job {r['job_id']})" if r.get("job_id") else "")
            for r in recs
        ]
        ax.set_yticks(ys, labels)
        ax.set_ylim(len(recs) - 0.4, -0.6)
        ax.set_xlim(left=0)
        ax.set_xlabel("seconds from fault end (or worker death) to the job running again")
        return to_svg(fig, chart_id, narrow=True)
