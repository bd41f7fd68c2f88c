"""Charts as inline SVG strings, drawn with matplotlib's object API (no pyplot, no display).

Text stays text (``svg.fonttype: none``) and is escaped by matplotlib's SVG writer; mathtext is
off so a ``$`` in a label is just a dollar. Each chart gets its own hash salt so ids inside
several SVGs inlined in one page are deterministic and do not collide.
"""

from __future__ import annotations

import io
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from harness.report.history import History, fault_kind

OUTCOME_COLOURS = {
    "succeeded": "#2da44e",
    "failed": "#cf222e",
    "deferred_for_retry": "#d4a72c",
    "retried": "#d4a72c",
    "aborted": "#8250df",
    "open": "#8c959f",
}
OUTCOME_LABELS = {
    "succeeded": "run succeeded",
    "failed": "run failed (final)",
    "deferred_for_retry": "run ended, retry scheduled",
    "aborted": "run aborted",
    "open": "run never ended",
}
FAULT_COLOURS = ("#cf222e", "#0969da", "#bf8700", "#8250df", "#1b7c83", "#bc4c00")
PASS, FAIL, NEUTRAL = "#2da44e", "#cf222e", "#57606a"
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


def timeline_chart(
    history: History, chart_id: str, highlight: Collection[object] = ()
) -> str | None:
    """Fault windows shaded, each job's runs as bars, and throughput underneath.

    Jobs in ``highlight`` (e.g. lost ones) get a red marker and a red label. Jobs nobody
    submitted (the SUT's periodic tasks) are faded and labelled with their task name, and
    left out of the throughput.
    """
    runs = {job_id: r for job_id, r in history.runs().items() if r}
    submits = history.of_kind("submit")
    faults = history.faults()
    if not runs and not submits and not faults:
        return None
    ours = {s["job_id"] for s in submits if isinstance(s.get("job_id"), int)} or set(runs)
    tasks = {j.get("id"): str(j.get("task_name") or "") for j in history.of_kind("job")}
    t0, t_end = history.t0, history.t_end
    first = min((r.start for rs in runs.values() for r in rs), default=t0)
    left = min(0.0, first - t0)  # the SUT's own jobs may run before the scenario starts
    span = max(t_end - t0 - left, 1e-3)

    # One row per submitted job (by id); the SUT's own jobs share one row per task name.
    def row_key(job_id: int) -> object:
        return job_id if job_id in ours else f"{tasks.get(job_id) or 'other jobs'}"

    own = sorted({j for j in runs if j in ours} | {j for j in highlight if isinstance(j, int)})
    periodic = sorted({str(row_key(j)) for j in runs if j not in ours})
    job_ids: list[object] = [*own, *periodic]
    rows = {key: i for i, key in enumerate(job_ids)}
    height = min(2.6 + 0.14 * len(job_ids), 10.0)
    with _rc():
        health = [
            o
            for o in history.of_kind("observation")
            if o.get("name") == "health_status" and _is_num(o.get("t"))
        ]
        ratios = [height, 1.6, 0.7] if health else [height, 1.6]
        fig = _figure(11, sum(ratios))
        axes = fig.subplots(len(ratios), 1, sharex=True, height_ratios=ratios)
        top, bottom = axes[0], axes[1]
        seen: set[str] = set()
        for job_id, job_runs in runs.items():
            y = rows[row_key(job_id)]
            for run in job_runs:
                end = run.end if run.end is not None else t_end
                outcome = run.outcome if run.outcome in OUTCOME_COLOURS else "open"
                outcome = "deferred_for_retry" if outcome == "retried" else outcome
                seen.add(outcome)
                top.broken_barh(
                    [(run.start - t0, max(end - run.start, span / 800))],
                    (y - 0.36, 0.72),
                    facecolors=OUTCOME_COLOURS[outcome],
                    edgecolors="#cf222e" if run.end is None else "none",
                    hatch="///" if run.end is None else None,
                    linewidth=0.6,
                    alpha=1.0 if job_id in ours else 0.4,
                )
        for lost_id in highlight:
            if isinstance(lost_id, int) and lost_id in rows:
                top.plot([t_end - t0], [rows[lost_id]], marker="X", color=FAIL, markersize=7)
        kinds: dict[str, str] = {}
        label_tf = blended_transform_factory(top.transData, top.transAxes)
        for n, fault in enumerate(faults):
            start = fault.get("start")
            if not isinstance(start, int | float):
                continue
            end_raw = fault.get("end")
            end = float(end_raw) if isinstance(end_raw, int | float) else t_end
            kind = fault_kind(fault)
            colour = kinds.setdefault(kind, FAULT_COLOURS[len(kinds) % len(FAULT_COLOURS)])
            for ax in axes:
                ax.axvspan(start - t0, end - t0, color=colour, alpha=0.13, linewidth=0)
                ax.axvline(start - t0, color=colour, linewidth=0.8, alpha=0.7)
            top.text(
                start - t0,
                1.005 + 0.045 * (n % 2),
                f"{kind} {fault.get('target') or ''}".strip(),
                transform=label_tf,
                fontsize=7,
                color=colour,
                clip_on=False,
                va="bottom",
            )
        top.set_ylim(-0.8, max(len(job_ids), 1) - 0.2)
        top.invert_yaxis()
        if len(job_ids) <= 30:
            top.set_yticks(range(len(job_ids)), [str(k) for k in job_ids])
            for label, key in zip(top.get_yticklabels(), job_ids, strict=True):
                if key in highlight:
                    label.set_color(FAIL)
                    label.set_fontweight("bold")
                elif isinstance(key, str):
                    label.set_color(NEUTRAL)
                    label.set_fontsize(7)
        else:
            top.set_yticks([])
        top.set_ylabel(f"submitted jobs ({len(own)}, by id)" if own else "jobs")
        handles: list[Any] = [
            Patch(facecolor=OUTCOME_COLOURS[k], label=OUTCOME_LABELS[k])
            for k in OUTCOME_LABELS
            if k in seen
        ]
        handles += [Patch(facecolor=c, alpha=0.3, label=f"fault: {k}") for k, c in kinds.items()]
        if handles:
            top.legend(
                handles=handles,
                loc="upper left",
                bbox_to_anchor=(1.0, 1.0),
                fontsize=8,
                frameon=False,
            )
        _throughput(bottom, history, t0, left, span, ours)
        if health:
            _health(axes[2], health, t0)
        axes[-1].set_xlim(left, left + span * 1.01)
        axes[-1].set_xlabel("seconds since scenario start")
        return to_svg(fig, chart_id)


def _throughput(
    ax: Any, history: History, t0: float, left: float, span: float, ours: Collection[object]
) -> None:
    width = max(span / 60, 0.25)
    nbins = max(int(span / width) + 1, 1)
    events = [e for e in history.of_kind("job_event") if e.get("job_id") in ours]
    series = {
        "submitted": [
            s["t_invoke"] for s in history.of_kind("submit") if _is_num(s.get("t_invoke"))
        ],
        "succeeded": [
            e["at"] for e in events if e.get("type") == "succeeded" and _is_num(e.get("at"))
        ],
        "failed": [e["at"] for e in events if e.get("type") == "failed" and _is_num(e.get("at"))],
    }
    colours = {"submitted": "#0969da", "succeeded": PASS, "failed": FAIL}
    edges = [left + i * width for i in range(nbins + 1)]
    for name, times in series.items():
        if not times:
            continue
        counts = [0] * nbins
        for t in times:
            counts[min(max(int((t - t0 - left) / width), 0), nbins - 1)] += 1
        rates = [c / width for c in counts]
        ax.stairs(rates, edges, color=colours[name], label=f"{name}/s", linewidth=1.2)
    ax.set_ylabel("submitted jobs/s")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)


def _health(ax: Any, samples: Sequence[Mapping[str, Any]], t0: float) -> None:
    """``/health`` samples as a strip: green 200, red anything else (null: no answer)."""
    for ok in (True, False):
        xs = [float(o["t"]) - t0 for o in samples if (o.get("value") == 200) == ok]
        if xs:
            ax.scatter(
                xs,
                [0] * len(xs),
                marker="|",
                s=120,
                color=PASS if ok else FAIL,
                label="/health 200" if ok else "/health not 200",
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
            ax.barh(y, latency, color=colour, height=0.6)
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
