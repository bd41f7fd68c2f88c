"""The checker: pure functions, history in, verdicts out (one module per invariant)."""

from harness.checker.attempt_count import check_attempt_count
from harness.checker.effects import check_no_duplicate_effects
from harness.checker.health import check_health_transitions
from harness.checker.job_timeout import check_job_timeout
from harness.checker.queue_accounting import accounting, check_queue_accounting
from harness.checker.recovery_latency import check_recovery_latency, stall_recovery_budget
from harness.checker.retry_schedule import check_retry_schedule, expected_delay
from harness.checker.runs import Run, runs_by_job, runs_of, scheduling_slack
from harness.checker.shutdown import check_graceful_shutdown
from harness.checker.verdict import FAIL, PASS, UNKNOWN, Status, Verdict, merge

__all__ = [
    "FAIL",
    "PASS",
    "UNKNOWN",
    "Run",
    "Status",
    "Verdict",
    "accounting",
    "check_attempt_count",
    "check_graceful_shutdown",
    "check_health_transitions",
    "check_job_timeout",
    "check_no_duplicate_effects",
    "check_queue_accounting",
    "check_recovery_latency",
    "check_retry_schedule",
    "expected_delay",
    "merge",
    "runs_by_job",
    "runs_of",
    "scheduling_slack",
    "stall_recovery_budget",
]
