"""Every timing budget and tolerance the checks judge by, in one place.

Each is a pure function of the timing profile (the SUT's settings, in seconds) and the
calibration measured on the scenario's own stack before any fault (see
:mod:`harness.calibration`). Nothing here is measured from the runs being judged: a slow
worker cannot buy itself looser checks. Where the system promises a rule (``/health``
freshness), the rule is imported from the system (:mod:`system.promises`), never re-derived.

Derivations (also shown in the report's figures):

- **scheduling tolerance** = ``SCHEDULING_FACTOR x worst pickup lateness in calibration +
  TIMESTAMP_NOISE``: how late a due job may start. A check whose smallest judged quantity is
  not at least twice this answers ``unknown`` (the machine is too slow to judge it).
- **retry schedule**: each delay ``min(base * 2**(k-1), cap)`` +- the scheduling tolerance.
- **shutdown**: runs aborted at ``WORKER_TIMEOUT`` +- the scheduling tolerance; the process
  exits within ``WORKER_TIMEOUT + EXIT_MARGIN + tolerance``.
- **stall recovery** = heartbeat interval (the last beat may be that old) + stall threshold +
  check interval + poll interval + tolerance. The seed document's own bound (the threshold:
  "a job is stalled after 10 minutes") is shown beside it.
- **reconnect** = connect timeout + capped reconnect delay + heartbeat + poll + tolerance.
- **/health**: 503 within the system's freshness limit + a sampling interval + tolerance after
  a worker dies; within the API's database timeout + sampling + tolerance after the database
  goes; 200 within reconnect + heartbeat + sampling after healing, plus the system's
  promised teardown of a lost session after a fault that ends the workers' sessions (the
  teardown may start as a short database outage ends).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from harness.profiles import Profile
from system.promises import (
    api_db_timeout,
    heartbeat_freshness_limit,
    session_teardown_limit,
)

#: Tolerance = this x the worst pickup lateness seen in calibration (+ noise): a scenario may
#: run under up to twice the load its calibration saw.
SCHEDULING_FACTOR = 2.0
#: Event times are PostgreSQL transaction timestamps taken by different sessions (seconds).
TIMESTAMP_NOISE = 0.02
#: A process exits this long after its worker stopped at most (seconds): closing two pools,
#: unregistering the worker, interpreter teardown. Measured 0.3-0.8 s on 2 loaded cores.
EXIT_MARGIN = 1.0
#: Process start (a Python SUT process boots in about 1-2 s; more on a loaded machine).
PROCESS_START_MARGIN = 10.0
#: A tolerance may be at most this fraction of the smallest quantity it judges.
MAX_TOLERANCE_FRACTION = 0.5


@dataclass(frozen=True)
class Calibration:
    """Retry lateness measured on the stack before any fault: ``started - retry time``."""

    samples: int
    pickup_p50: float
    pickup_max: float
    job_ids: tuple[int, ...] = ()
    rounds: tuple[float, ...] = ()  # each calibration round's worst pickup, when there were several

    @property
    def tolerance(self) -> float:
        """The scheduling tolerance (seconds) every timing check uses."""
        return round(SCHEDULING_FACTOR * self.pickup_max + TIMESTAMP_NOISE, 4)

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "job_ids": list(self.job_ids),
            "rounds": list(self.rounds),
            "tolerance": self.tolerance,
        }


def too_coarse(cal: Calibration, smallest: float, what: str) -> str | None:
    """Why ``cal``'s tolerance cannot judge a quantity as small as ``smallest`` (seconds),
    or None when it can."""
    if cal.tolerance <= MAX_TOLERANCE_FRACTION * smallest:
        return None
    return (
        f"the machine is too slow to judge {what}: calibrated tolerance {cal.tolerance:.3f}s "
        f"(worst pickup {cal.pickup_max:.3f}s over {cal.samples} samples) exceeds "
        f"{MAX_TOLERANCE_FRACTION:g} x {smallest:.3f}s"
    )


def backoff_total(p: Profile) -> float:
    """Sum of every backoff wait a job can go through (``max_retries`` runs)."""
    return sum(
        min(p.retry_base_delay * 2 ** (k - 1), p.retry_max_delay) for k in range(1, p.max_retries)
    )


def stall_recovery(p: Profile, cal: Calibration) -> float:
    """A worker's death to its job running again, as our configuration implies."""
    return (
        p.worker_heartbeat_interval
        + p.stalled_job_threshold
        + p.stalled_job_check_interval
        + p.worker_poll_interval
        + cal.tolerance
    )


def stall_seed_bound(p: Profile) -> float:
    """The seed document's bound on stall detection: the threshold itself."""
    return p.stalled_job_threshold


def reconnect(p: Profile, cal: Calibration) -> float:
    """The database back to jobs running again: notice, capped backoff, new session, poll."""
    return (
        p.db_connect_timeout
        + p.db_reconnect_max_delay
        + p.worker_heartbeat_interval
        + p.worker_poll_interval
        + cal.tolerance
    )


def long_outage(p: Profile) -> float:
    """A database outage long enough to matter: the worker notices (pool timeout + connect
    timeout; Procrastinate alone stops its worker here), ends its session (the system's own
    teardown limit: ``WORKER_TIMEOUT`` + pool timeout + margin), then still finds the database
    gone for four reconnect attempts (a supervisor that gives up early is caught)."""
    steps, delay = 0.0, 0.1
    for _ in range(4):
        steps += delay
        delay = min(delay * 2, p.db_reconnect_max_delay)
    notice = p.db_pool_timeout + p.db_connect_timeout
    return notice + session_teardown(p) + steps


def session_teardown(p: Profile) -> float:
    """The system's limit on ending a lost worker session before it reconnects (its running
    jobs get ``WORKER_TIMEOUT``, its pending database calls the pool timeout)."""
    return session_teardown_limit(p.worker_timeout, p.db_pool_timeout)


def health_interval(p: Profile) -> float:
    """How often to sample ``/health``: often enough to see a heartbeat go stale."""
    return min(0.1, p.worker_heartbeat_interval / 2)


def health_detect(p: Profile, cal: Calibration) -> dict[str, float]:
    """Budget per fault kind from the fault's start to the first 503."""
    sample = health_interval(p) + cal.tolerance
    worker = heartbeat_freshness_limit(p.worker_heartbeat_interval) + sample
    database = api_db_timeout(p.db_pool_timeout) + sample
    return {
        "kill": worker,
        "sigterm": worker,
        "pg_kill": database,
        "pg_restart": database,
        "proxy_down": database,
        "*": max(worker, database),
    }


def health_recover(p: Profile, cal: Calibration) -> float:
    """Budget from a fault's end to ``/health`` saying 200 again."""
    return reconnect(p, cal) + p.worker_heartbeat_interval + health_interval(p) + cal.tolerance


#: Fault kinds that end the workers' database sessions (PostgreSQL down, the link cut).
SESSION_ENDING = ("pg_kill", "pg_restart", "proxy_down")


def health_recover_after(p: Profile, cal: Calibration) -> dict[str, float]:
    """Budget per fault kind from a fault's end to ``/health`` saying 200 again (``"*"``: the
    default). A fault in :data:`SESSION_ENDING` may end a worker's session at its very end
    (a 0.2 s PostgreSQL crash): the worker then tears the session down, within the system's
    own limit, before it reconnects, and its heartbeat goes stale meanwhile."""
    base = health_recover(p, cal)
    teardown = session_teardown(p)
    return {**{kind: round(base + teardown, 4) for kind in SESSION_ENDING}, "*": base}


def pickup(p: Profile) -> float:
    """How long a queued job may wait for an idle worker (a generous bound for waiting, not a
    judged budget)."""
    return p.worker_poll_interval + PROCESS_START_MARGIN


def settle(p: Profile, cal: Calibration) -> float:
    """How long any acknowledged job may take to become terminal: every backoff wait, every
    run at its timeout plus a poll, one stalled-job recovery, a reconnect and a process start.
    Jobs not terminal by then are lost."""
    runs = p.max_retries * (p.job_timeout + p.worker_poll_interval)
    return (
        backoff_total(p)
        + runs
        + stall_recovery(p, cal)
        + p.db_reconnect_max_delay
        + PROCESS_START_MARGIN
    )


def shutdown_exit(p: Profile, cal: Calibration) -> float:
    """Seconds a SIGTERMed worker may take to exit 0."""
    return p.worker_timeout + EXIT_MARGIN + cal.tolerance
