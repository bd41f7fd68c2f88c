"""Deliberate defects: realistic bugs the chaos harness must catch (mutation testing).

Switched on only through ``BULLETPROOF_DEFECTS`` (comma-separated values below); a worker with
any of them logs a loud warning. Each member's value is its name in that variable; each has a
one-line description (:attr:`Defect.description`) saying what it breaks. system/README.md
lists which invariant of the checker should turn red for each one.
"""

from __future__ import annotations

import enum


class Defect(enum.StrEnum):
    """One deliberate defect; the value is the name used in ``BULLETPROOF_DEFECTS``."""

    PLAIN_INSERT = "plain-insert"
    NO_STALL_RECOVERY = "no-stall-recovery"
    NO_DB_SUPERVISION = "no-db-supervision"
    NO_TIMEOUT = "no-timeout"
    CONSTANT_BACKOFF = "constant-backoff"
    LINEAR_BACKOFF = "linear-backoff"
    EXTRA_RUN = "extra-run"
    UNCAPPED_BACKOFF = "uncapped-backoff"
    TIMEOUT_NOT_RETRIED = "timeout-not-retried"
    NO_SHUTDOWN_ABORT = "no-shutdown-abort"
    CANCELLED_NOT_REQUEUED = "cancelled-not-requeued"
    STALL_THRESHOLD_IGNORED = "stall-threshold-ignored"
    SLOW_STALL_RECOVERY = "slow-stall-recovery"
    HEALTH_ALWAYS_OK = "health-always-ok"
    HEALTH_IGNORES_HEARTBEAT = "health-ignores-heartbeat"
    ACK_WITHOUT_QUEUE = "ack-without-queue"
    SUPERVISOR_GIVES_UP = "supervisor-gives-up"
    NO_WATCHDOG = "no-watchdog"
    SUCCEED_WITHOUT_STORE = "succeed-without-store"

    @property
    def description(self) -> str:
        """What the defect does, in one line."""
        return DESCRIPTIONS[self]


SCHEMA_DEFECTS: frozenset[Defect] = frozenset({Defect.PLAIN_INSERT})
"""The defects that change what ``migrate`` creates; every other one leaves the schema as is
(the harness copies one migrated database per set of these)."""


DESCRIPTIONS: dict[Defect, str] = {
    Defect.PLAIN_INSERT: (
        "the jokes table has no primary key and jokes are stored with a plain INSERT "
        "(duplicate rows when a joke is fetched twice)"
    ),
    Defect.NO_STALL_RECOVERY: (
        "retry_stalled_jobs finds stalled jobs but leaves them `doing` (never re-queued)"
    ),
    Defect.NO_DB_SUPERVISION: (
        "no supervisor: when the database goes away the worker process exits 1 "
        "(and no heartbeat watchdog)"
    ),
    Defect.NO_TIMEOUT: (
        "fetch_and_cache_joke runs without JOB_TIMEOUT (a hung API call hangs the run)"
    ),
    Defect.CONSTANT_BACKOFF: "every retry delay is RETRY_BASE_DELAY (no doubling)",
    Defect.LINEAR_BACKOFF: "the delay after run k is RETRY_BASE_DELAY x k (capped)",
    Defect.EXTRA_RUN: (
        "off by one: a failing job runs MAX_RETRIES + 1 times before it fails for good"
    ),
    Defect.UNCAPPED_BACKOFF: "RETRY_MAX_DELAY is ignored: the delay keeps doubling",
    Defect.TIMEOUT_NOT_RETRIED: (
        "the retry list names network errors but not timeouts: TimeoutError (JOB_TIMEOUT) "
        "and httpx timeouts fail the job at once"
    ),
    Defect.NO_SHUTDOWN_ABORT: (
        "no graceful-shutdown timeout: on SIGTERM running jobs are never aborted at "
        "WORKER_TIMEOUT, they run on until they end by themselves (or JOB_TIMEOUT)"
    ),
    Defect.CANCELLED_NOT_REQUEUED: (
        "a run aborted at WORKER_TIMEOUT is not re-queued: the retry strategy declines "
        "CancelledError, so the job ends `aborted`"
    ),
    Defect.STALL_THRESHOLD_IGNORED: (
        "stalled-job recovery re-queues every `doing` job it sees, whatever its worker's "
        "heartbeat (a threshold of 0: live workers' jobs run twice)"
    ),
    Defect.SLOW_STALL_RECOVERY: (
        "stalled-job recovery uses twice STALLED_JOB_THRESHOLD (recovers too late)"
    ),
    Defect.HEALTH_ALWAYS_OK: (
        "/health answers 200 whatever happens (database and heartbeats unchecked)"
    ),
    Defect.HEALTH_IGNORES_HEARTBEAT: (
        "/health checks the database only: 200 while it answers, however old the heartbeats"
    ),
    Defect.ACK_WITHOUT_QUEUE: (
        "POST /tasks/fetch-joke answers 202 with a job id for every 2nd submission of each API "
        "process (the 2nd, 4th, ...) but never queues that job (the id is reserved, no row)"
    ),
    Defect.SUPERVISOR_GIVES_UP: (
        "after a lost worker session the supervisor reconnects once; if that attempt fails "
        "the process exits 1"
    ),
    Defect.NO_WATCHDOG: (
        "no heartbeat watchdog: only Procrastinate's heartbeat task (dies silently on its "
        "first database error, stops during shutdown); the LISTEN connection is not watched"
    ),
    Defect.SUCCEED_WITHOUT_STORE: (
        "database errors of the joke upsert are swallowed and the job succeeds without its "
        "row; to make it reachable without a fault, jobs with an even id skip the write"
    ),
}


def parse_defects(raw: str) -> frozenset[Defect]:
    """The defects named in ``raw`` (comma-separated); ``ValueError`` names unknown ones."""
    names = {part.strip() for part in raw.split(",") if part.strip()}
    known = {d.value for d in Defect}
    unknown = names - known
    if unknown:
        raise ValueError(
            f"unknown defect {', '.join(sorted(unknown))}; choose from {', '.join(sorted(known))}"
        )
    return frozenset(Defect(name) for name in names)
