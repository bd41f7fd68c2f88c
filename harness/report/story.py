"""A job's story: one chronological list of everything that explains what happened to it.

Merges the job's submission and events, its runs as the checker derives them (worker and how
each ended), the faults active around it, the stalled-job sweeps that saw it, process starts
and exits, and every log line naming it from every process log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.checker import Run
from harness.history.records import Fault, Observation
from harness.report.history import Loaded, worker_of
from harness.report.logs import LogLine, ended_with_error, last_problems, lines_naming

#: Seconds of context before a job's first and after its last record.
MARGIN = 1.0
MAX_LINES = 400
PROCESS_FAULTS = frozenset({"kill", "sigterm", "restart", "pause", "resume", "terminate_backend"})
DB_WIDE_TARGETS = ("postgres", "dblink")


@dataclass(frozen=True)
class Line:
    """One entry of a story: ``kind`` is a word shown as text (never colour alone)."""

    t: float | None
    kind: str  # submit | run | event | fault | sweep | process | log | final
    text: str
    bad: bool = False
    source: str | None = None  # the process whose log it comes from
    ref: str | None = None  # a link target (a log file)


def run_ending(run: Run) -> tuple[str, bool]:
    """How a run ended, in words, and whether that is bad news for the job."""
    if run.overlapped:
        return "overlapped by another run of the same job (two executions at once)", True
    if run.end_type is None:
        return "never ended (no succeeded, failed or re-queue event)", True
    if run.recovered:
        return "re-queued by the stalled-job sweep (its worker was presumed dead)", False
    if run.aborted:
        return "aborted by a graceful shutdown and re-queued", False
    if run.end_type == "deferred_for_retry":
        delay = run.requested_delay
        when = f" in {delay:.2f} s" if delay is not None else ""
        return f"failed; retry scheduled{when} (backoff)", False
    if run.end_type == "failed":
        return "failed for good", True
    return str(run.end_type), run.end_type not in ("succeeded",)


def _fault_text(f: Fault) -> str:
    detail = ", ".join(f"{k}={v}" for k, v in sorted(f.detail.items())) if f.detail else ""
    return f"{f.kind_} on {f.target}" + (f" ({detail})" if detail else "")


def _fault_hits(f: Fault, workers: set[str]) -> bool:
    """Whether the fault could stop this job's runs: its worker, or the whole database."""
    target = f.target
    if target.startswith(DB_WIDE_TARGETS):
        return True
    if target.startswith("worker:"):
        return not workers or target.split(":", 1)[1] in workers
    return False


def job_window(loaded: Loaded, job_id: int) -> tuple[float, float]:
    """From the job's first record to its last (the scenario's end when it never finished)."""
    times = [s.t_invoke for s in loaded.submits_of(job_id)]
    times += [e.at for e in loaded.events_by_job.get(job_id, [])]
    runs = loaded.runs.get(job_id, [])
    if not times:
        return loaded.t0, loaded.t_end
    last = max(times)
    job = loaded.jobs.get(job_id)
    if job is None or job.status not in ("succeeded", "failed", "cancelled", "aborted"):
        last = loaded.t_end
    if runs and runs[-1].end is None:
        last = loaded.t_end
    return min(times) - MARGIN, last + MARGIN


def story(
    loaded: Loaded,
    job_id: int,
    logs: Mapping[str, list[LogLine]],
    log_paths: Mapping[str, str],
    verdict: str | None = None,
    named: Mapping[int, list[LogLine]] | None = None,
) -> list[Line]:
    """Everything about ``job_id`` in time order (untimed log lines after timed ones).

    ``named``: :func:`harness.report.logs.mentions` of ``logs``, when already computed.
    """
    h = loaded.history
    lines: list[Line] = []
    for s in loaded.submits_of(job_id):
        took = s.t_complete - s.t_invoke
        text = f"submitted through the API (op {s.op_id}): {s.outcome}, took {took:.2f} s"
        if s.args:
            text += f"; args {json.dumps(s.args, ensure_ascii=False, sort_keys=True)[:300]}"
        if s.error:
            text += f": {s.error}"
        lines.append(Line(s.t_invoke, "submit", text, s.outcome != "ok"))
    runs = loaded.runs.get(job_id, [])
    workers = {w for r in runs if (w := worker_of(r))}
    for run in runs:
        on = worker_of(run)
        where = f" on worker {on}" if on else " (worker not recorded)"
        lines.append(Line(run.start, "run", f"run {run.number} started{where}"))
        ending, bad = run_ending(run)
        if run.end is not None:
            after = f" after {run.end - run.start:.2f} s" if run.end >= run.start else ""
            lines.append(Line(run.end, "run", f"run {run.number} {ending}{after}", bad))
        else:
            lines.append(Line(None, "run", f"run {run.number} {ending}", bad))
    covered = {"started", "succeeded", "failed", "deferred_for_retry", "aborted"}
    for e in loaded.events_by_job.get(job_id, []):
        if e.type == "deferred":
            lines.append(Line(e.at, "event", "queued (deferred)"))
        elif e.type == "scheduled":
            lines.append(Line(e.at, "event", "scheduled: the time its next run may start"))
        elif e.type not in covered:
            lines.append(Line(e.at, "event", f"event {e.type}"))
    lo, hi = job_window(loaded, job_id)
    for f in loaded.faults:
        end = f.end if f.end is not None else loaded.t_end
        if f.start > hi or end < lo:
            continue
        hits = _fault_hits(f, workers)
        lines.append(Line(f.start, "fault", f"fault starts: {_fault_text(f)}", hits))
        if f.end is not None:
            lines.append(
                Line(f.end, "fault", f"fault ends: {_fault_text(f)} ({f.end - f.start:.2f} s)")
            )
        else:
            lines.append(Line(None, "fault", f"fault never closed: {_fault_text(f)}", hits))
    for o in loaded.observations:
        lines.extend(_observation(o, job_id, lo, hi))
    for name, parsed in logs.items():
        for ln in parsed:
            if ln.start is not None and ln.t is not None and lo <= ln.t <= hi:
                lines.append(
                    Line(ln.t, "process", f"{name} started (start #{ln.start})", source=name)
                )
    for name, parsed in logs.items():
        exit_line = _unexpected_exit(name, parsed, lo, hi, workers)
        if exit_line is not None:
            lines.append(exit_line)
    for ln in named.get(job_id, []) if named is not None else lines_naming(logs, job_id):
        lines.append(
            Line(
                ln.t,
                "log",
                ln.message,
                ln.problem,
                source=ln.process,
                ref=f"{log_paths.get(ln.process, '')}",
            )
        )
    for r in h:  # the job's stored effect (``job_effect`` records, when the history has them)
        if getattr(r, "kind", None) == "job_effect" and getattr(r, "job_id", None) == job_id:
            stored = getattr(r, "stored_at", None)
            lines.append(
                Line(
                    float(stored) if isinstance(stored, int | float) else None,
                    "effect",
                    f"joke {getattr(r, 'joke_id', '?')} stored for this job (job_effects row)",
                )
            )
    job = loaded.jobs.get(job_id)
    final = (
        f"final state in the database: {job.status}, {job.attempts} attempt(s) recorded"
        if job is not None
        else "no row in the database at the end"
    )
    if verdict:
        final += f" → {verdict}"
    timed = sorted((x for x in lines if x.t is not None), key=lambda x: x.t or 0.0)
    untimed = [x for x in lines if x.t is None]
    out = timed[:MAX_LINES] + untimed
    out.append(Line(None, "final", final, verdict in ("lost", "unexpected")))
    return out


def _unexpected_exit(
    name: str, parsed: list[LogLine], lo: float, hi: float, workers: set[str]
) -> Line | None:
    """A process whose log ends on an error, inside the job's window: often the cause."""
    if not parsed or not ended_with_error(parsed):
        return None
    last = parsed[-1]
    if last.t is None or not lo <= last.t <= hi:
        return None
    problems = last_problems(parsed, limit=1)
    why = problems[-1].message if problems else last.message
    ran_it = not workers or name in workers
    return Line(last.t, "process", f"{name} exited on an error: {why}", ran_it, source=name)


def _observation(o: Observation, job_id: int, lo: float, hi: float) -> Sequence[Line]:
    value = o.value if isinstance(o.value, Mapping) else {}
    if o.name == "stalled_recovery":
        if value.get("job_id") != job_id:
            return []
        worker = value.get("worker_id")
        return [
            Line(
                o.t,
                "sweep",
                f"stalled-job sweep re-queued it (attempts {value.get('attempts')}, "
                f"worker id {worker})",
            )
        ]
    if not lo <= o.t <= hi:
        return []
    if o.name == "worker_ready":
        return [Line(o.t, "process", f"worker ready: {o.value}")]
    if o.name == "shutdown" and value:
        code = value.get("exit_code")
        return [
            Line(
                o.t,
                "process",
                f"worker {value.get('worker')} exited with code {code} after SIGTERM",
                code not in (0, None),
            )
        ]
    if o.name == "process_exit" and value:
        return [
            Line(
                o.t,
                "process",
                f"{value.get('process')} exited with code {value.get('code')}",
                not value.get("expected", False),
            )
        ]
    return []
