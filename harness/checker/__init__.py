"""The checker: pure functions, history in, verdicts out (one module per invariant).

Every tolerance and budget is a parameter (from harness/budgets.py); no check derives one from
the run it judges. Invariant names are :class:`harness.vocabulary.Invariant`.
"""

from harness.checker.attempt_count import check_attempt_count
from harness.checker.calibration import check_calibration
from harness.checker.effects import check_no_duplicate_effects
from harness.checker.health import check_health_transitions
from harness.checker.health_amid_faults import check_health_amid_faults
from harness.checker.job_effects import check_job_effects
from harness.checker.job_timeout import check_job_timeout
from harness.checker.processes import check_processes_alive
from harness.checker.queue_accounting import accounting, check_queue_accounting
from harness.checker.recovery_latency import check_queue_resumes, check_recovery_latency
from harness.checker.reruns import check_justified_reruns
from harness.checker.retry_decisions import check_retry_decisions
from harness.checker.retry_schedule import check_retry_schedule, expected_delay, is_capped
from harness.checker.runs import (
    Run,
    acknowledged_ids,
    could_stop,
    run_workers,
    runs_by_job,
    runs_of,
    stopping_faults,
)
from harness.checker.shutdown import check_graceful_shutdown
from harness.checker.shutdown_aborts import check_shutdown_aborts
from harness.checker.stall_recovery import check_stall_recovery_amid_faults
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Status, Verdict, merge
from harness.vocabulary import Invariant

__all__ = [
    "FAIL",
    "PASS",
    "UNKNOWN",
    "Invariant",
    "Run",
    "Status",
    "Verdict",
    "accounting",
    "acknowledged_ids",
    "check_attempt_count",
    "check_calibration",
    "check_graceful_shutdown",
    "check_health_amid_faults",
    "check_health_transitions",
    "check_job_effects",
    "check_job_timeout",
    "check_justified_reruns",
    "check_no_duplicate_effects",
    "check_processes_alive",
    "check_queue_accounting",
    "check_queue_resumes",
    "check_recovery_latency",
    "check_retry_decisions",
    "check_retry_schedule",
    "check_shutdown_aborts",
    "check_stall_recovery_amid_faults",
    "could_stop",
    "expected_delay",
    "is_capped",
    "merge",
    "run_workers",
    "runs_by_job",
    "runs_of",
    "stopping_faults",
]
