"""Health amid faults: outages long enough to notice are noticed by /health."""

from __future__ import annotations

from harness.checker import FAIL, PASS, check_health_amid_faults
from harness.checker.health_amid_faults import all_workers_stopped
from harness.history.builder import HistoryBuilder
from harness.history.records import History

DB = 0.5
WORKERS = 0.8
ALLOW = 2.0


def _check(history: History) -> tuple[str, str, dict]:
    v = check_health_amid_faults(
        history,
        workers=["w1", "w2"],
        database_budget=DB,
        workers_budget=WORKERS,
        shutdown_allowance=ALLOW,
    )
    return v.status, v.summary, v.figures


def _sampled(b: HistoryBuilder, answer: dict[float, int | None], until: float = 6.0) -> None:
    """/health every 0.1 s: 200 unless ``answer`` says otherwise from that time on."""
    status: int | None = 200
    for i in range(int(until * 10)):
        t = round(i * 0.1, 1)
        status = answer.get(t, status)
        b.observe("health_status", status, t)


def test_a_database_outage_answered_503_in_time_passes() -> None:
    b = HistoryBuilder()
    b.fault("pg_kill", "postgres", 1.0, 3.0)
    _sampled(b, {1.3: 503, 3.2: 200})
    status, summary, figures = _check(b.build())
    assert status == PASS and summary.startswith("1 outages noticed")
    assert abs(figures["judged"][0]["detected_after"] - 0.3) < 1e-6


def test_a_health_that_always_says_200_fails() -> None:
    # health-always-ok: PostgreSQL down for 2 s, /health says 200 throughout
    b = HistoryBuilder()
    b.fault("pg_restart", "postgres", 1.0, 3.0)
    _sampled(b, {})
    status, _, figures = _check(b.build())
    assert status == FAIL
    assert figures["judged"][0]["detected_after"] is None


def test_every_worker_stopped_must_show_but_one_worker_stopped_need_not() -> None:
    # health-ignores-heartbeat: both workers killed for 2 s, /health stays 200
    b = HistoryBuilder()
    b.fault("kill", "worker:w1", 1.0, 4.0)
    b.fault("pause", "worker:w2", 1.5, 3.5)
    _sampled(b, {})
    status, _, figures = _check(b.build())
    assert status == FAIL and figures["judged"][0]["outage"].startswith("every worker stopped")
    # one worker stopped: the other beats, /health may well say 200
    b2 = HistoryBuilder()
    b2.fault("kill", "worker:w1", 1.0, 4.0)
    _sampled(b2, {})
    assert _check(b2.build())[0] == PASS


def test_a_sigterm_counts_as_a_stop_only_after_its_shutdown_allowance() -> None:
    b = HistoryBuilder()
    b.fault("sigterm", "worker:w1", 1.0, 5.0)
    b.fault("kill", "worker:w2", 0.5, 5.0)
    stopped = all_workers_stopped(b.build(), ["w1", "w2"], WORKERS, 100.0, shutdown_allowance=ALLOW)
    assert [(round(o.start - b.t0, 3), round(o.end - b.t0, 3)) for o in stopped] == [(3.0, 5.0)]


def test_outages_the_health_endpoint_could_not_be_asked_about_are_not_judged() -> None:
    b = HistoryBuilder()
    b.fault("proxy_down", "dblink", 1.0, 1.3)  # shorter than its budget
    b.fault("pg_kill", "postgres", 2.0, 4.0)
    b.fault("kill", "api", 1.8, 3.0)  # the API that answers /health was down
    _sampled(b, {})
    status, summary, figures = _check(b.build())
    assert status == PASS and summary.startswith("nothing to judge")
    assert figures["not_judged"] == {"shorter than budget": 1, "API down": 1, "no answer": 0}
