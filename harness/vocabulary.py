"""The harness's vocabulary, written once: job statuses, job events, run endings, fault kinds
and targets, observation names, submission outcomes and invariant names.

Each is a ``StrEnum``: members compare equal to the strings found in histories and results
(``JobStatus.SUCCEEDED == "succeeded"``), so records keep plain strings. Job statuses and event
types are Procrastinate's (``procrastinate.jobs.Status`` and the SQL enum
``procrastinate_job_event_type``); tests/checker/test_vocabulary.py checks them against the
installed Procrastinate. Table names are the system's (``system.db``), not restated here.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A ``procrastinate_jobs.status``; ``MISSING`` is ours: an acknowledged id with no row."""

    TODO = "todo"
    DOING = "doing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ABORTING = "aborting"
    ABORTED = "aborted"
    MISSING = "missing"


#: Statuses a job never leaves.
TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.ABORTED}
)
#: The task the client's submissions create (its name ends a job's ``task_name``).
SUBMITTED_TASK = "fetch_and_cache_joke"
#: The stalled-job recovery task (the system's ``system.tasks.STALLED_TASK``).
RECOVERY_TASK = "retry_stalled_jobs"


class EventType(StrEnum):
    """A ``procrastinate_events.type``. ``SCHEDULED``'s ``at`` is the time it is scheduled for."""

    DEFERRED = "deferred"
    STARTED = "started"
    DEFERRED_FOR_RETRY = "deferred_for_retry"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    CANCELLED = "cancelled"
    ABORT_REQUESTED = "abort_requested"
    ABORTED = "aborted"
    SCHEDULED = "scheduled"
    RETRIED = "retried"


#: Events that leave a job in a terminal status.
TERMINAL_EVENTS = frozenset(
    {EventType.SUCCEEDED, EventType.FAILED, EventType.CANCELLED, EventType.ABORTED}
)

#: Events that end a run (``Run.end_type``).
RUN_ENDINGS = frozenset(
    {EventType.DEFERRED_FOR_RETRY, EventType.SUCCEEDED, EventType.FAILED, EventType.ABORTED}
)


class FaultKind(StrEnum):
    """A fault window's ``fault_kind``. Toxiproxy toxics keep their toxic type as kind
    (``timeout``, ``reset_peer``, ``latency``...); fake-API faults are ``http_<kind>``."""

    KILL = "kill"  # SIGKILL (and usually a restart)
    SIGTERM = "sigterm"  # graceful stop: window from the signal to the exit
    RESTART = "restart"  # graceful stop and start
    PAUSE = "pause"  # SIGSTOP ... SIGCONT
    TERMINATE_BACKEND = "terminate_backend"  # pg_terminate_backend of a worker's connections
    HEARTBEAT_REJECTED = "heartbeat_rejected"  # PostgreSQL rejects heartbeat writes (all workers)
    PG_KILL = "pg_kill"
    PG_RESTART = "pg_restart"
    PROXY_DOWN = "proxy_down"
    TIMEOUT = "timeout"
    RESET_PEER = "reset_peer"
    LATENCY = "latency"
    HTTP_STATUS = "http_status"
    HTTP_SLOW = "http_slow"
    HTTP_HANG = "http_hang"
    HTTP_MALFORMED = "http_malformed"


class Target(StrEnum):
    """A fault window's ``target``; a worker is ``worker:<name>`` (see :func:`worker_target`)."""

    API = "api"
    POSTGRES = "postgres"  # the PostgreSQL server
    DBLINK = "dblink"  # the SUT -> PostgreSQL proxy
    JOKEAPI = "jokeapi"  # the SUT -> joke API proxy, or the fake API itself
    HEARTBEAT = "heartbeat"  # every worker's heartbeat writes (inside PostgreSQL)


WORKER_PREFIX = "worker:"


def worker_target(name: str) -> str:
    """The fault target of worker ``name``."""
    return f"{WORKER_PREFIX}{name}"


def worker_of(target: str) -> str | None:
    """The worker name in a ``worker:<name>`` target, else None."""
    return target[len(WORKER_PREFIX) :] if target.startswith(WORKER_PREFIX) else None


class ObservationName(StrEnum):
    """An observation's ``name``."""

    HEALTH_STATUS = "health_status"  # HTTP status of /health, or null: no answer
    WORKER_READY = "worker_ready"
    STALLED_RECOVERY = "stalled_recovery"  # {job_id, attempts, worker_id} from the SUT's table
    RUN_WORKER = "run_worker"  # {job_id, run, worker} from the workers' logs
    RUN_ABORTED = "run_aborted"  # {job_id, run, worker}: aborted and re-queued, per its log
    RUN_FAILED = "run_failed"  # {job_id, run, worker}: failed, will retry (t: the decision)
    RUN_TIMED_OUT = "run_timed_out"  # {job_id, run, worker}: its timeout fired (t: the log line)
    RUN_ENDED = "run_ended"  # {job_id, run, worker, status}: Procrastinate's end line, any status
    SESSION_LOST = "session_lost"  # {worker, reason}: its watchdog ended its database session
    SESSION_ENDED = "session_ended"  # {worker, took}: a lost session's teardown was over
    SLOW_FETCH = "slow_fetch"  # {worker, job_id, start, end}: a fetch that found it was slow
    LOOP_STALL = "loop_stall"  # {worker, start, end}: its event loop not seen running (its log)
    CALIBRATION = "calibration"  # pickup latency measured before the faults
    MACHINE_STALL = "machine_stall"  # {start, duration}: the harness could not run (sentinel)
    NO_WORKER_LEFT = "no_worker_left"  # {worker: exit code}: all exited, none restarting
    PROCESS_STATUS = (
        "process_status"  # {process, running, exit_code, stopped_by_nemesis} at the end
    )


class SubmitOutcome(StrEnum):
    """A submission's ``outcome``."""

    OK = "ok"
    UNKNOWN = "unknown"
    ERROR = "error"


class ApiOutcome(StrEnum):
    """An ``api_request``'s ``outcome``, as the fake joke API records it."""

    OK = "ok"
    FAULT = "fault"
    NOT_FOUND = "not_found"
    ERROR = "error"


class Invariant(StrEnum):
    """The checker's invariant names: the stable keys of verdicts and results."""

    QUEUE_ACCOUNTING = "queue_accounting"
    NO_DUPLICATE_EFFECTS = "no_duplicate_effects"
    JOB_EFFECTS = "job_effects"
    JUSTIFIED_RERUNS = "justified_reruns"
    RETRY_SCHEDULE = "retry_schedule"
    RETRY_DECISIONS = "retry_decisions"  # the retry time asked for, judged amid faults
    ATTEMPT_COUNT = "attempt_count"
    JOB_TIMEOUT = "job_timeout"
    RECOVERY_LATENCY = "recovery_latency"
    HEALTH_TRANSITIONS = "health_transitions"
    HEALTH_AMID_FAULTS = "health_amid_faults"  # outages noticed by /health, amid other faults
    GRACEFUL_SHUTDOWN = "graceful_shutdown"
    SHUTDOWN_ABORTS = "shutdown_aborts"  # runs over by WORKER_TIMEOUT after SIGTERM, amid faults
    PROCESSES_ALIVE = "processes_alive"
    CALIBRATION = "calibration"
    SCHEDULE = "schedule"  # the nemesis carried out the (random) fault schedule as written


#: A mutation run is named ``<scenario>__defect_<defect>`` (:func:`harness.mutation.mutant_name`).
DEFECT_MARK = "__defect_"
