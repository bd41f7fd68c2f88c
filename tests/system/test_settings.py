"""Settings: the seed's names and defaults, durations with units, one-line errors, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from system.durations import parse_duration
from system.settings import SettingsError, load_settings

URL = {"PROCRASTINATE_DATABASE_URL": "postgresql://u@127.0.0.1:1/db"}


def test_defaults_are_the_seeds() -> None:
    s = load_settings(URL)
    assert s.api_base_url == "https://api.chucknorris.io"
    assert (s.max_retries, s.retry_base_delay, s.retry_max_delay) == (5, 2.0, 300.0)
    assert (s.job_timeout, s.worker_concurrency, s.worker_timeout) == (300.0, 10, 30.0)
    assert s.stalled_job_check_interval == 600.0  # 10 minutes
    assert s.stalled_job_threshold == 600.0
    assert s.db_pool_size == 20
    assert s.defects == frozenset()


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("10m", 600.0), ("1h", 3600.0), ("1.5", 1.5), (" 3 s ", 3.0)],
)
def test_durations_accept_units(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)
    assert load_settings({**URL, "JOB_TIMEOUT": raw}).job_timeout == pytest.approx(seconds)


def test_check_interval_bare_number_means_minutes_and_units_work() -> None:
    assert (
        load_settings({**URL, "STALLED_JOB_CHECK_INTERVAL": "10"}).stalled_job_check_interval == 600
    )
    fast = load_settings({**URL, "STALLED_JOB_CHECK_INTERVAL": "300ms"})
    assert fast.stalled_job_check_interval == pytest.approx(0.3)


@pytest.mark.parametrize("raw", ["off", "OFF", "0"])
def test_scheduled_fetch_can_be_switched_off(raw: str) -> None:
    assert load_settings({**URL, "SCHEDULED_FETCH_INTERVAL": raw}).scheduled_fetch_interval is None


def test_compressed_profile_is_accepted() -> None:
    s = load_settings(
        {
            **URL,
            "RETRY_BASE_DELAY": "200ms",
            "RETRY_MAX_DELAY": "1600ms",
            "JOB_TIMEOUT": "1.5s",
            "WORKER_TIMEOUT": "1s",
            "WORKER_HEARTBEAT_INTERVAL": "200ms",
            "STALLED_JOB_THRESHOLD": "2s",
            "WORKER_POLL_INTERVAL": "50ms",
        }
    )
    assert (s.retry_base_delay, s.worker_heartbeat_interval, s.worker_poll_interval) == (
        pytest.approx(0.2),
        pytest.approx(0.2),
        pytest.approx(0.05),
    )


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"JOB_TIMEOUT": "abc"}, "JOB_TIMEOUT='abc' is invalid"),
        ({"JOB_TIMEOUT": "-1s"}, "JOB_TIMEOUT='-1s' is invalid"),
        ({"WORKER_TIMEOUT": "0"}, "WORKER_TIMEOUT='0' is invalid: must be a positive duration"),
        ({"MAX_RETRIES": "0"}, "MAX_RETRIES='0' is invalid: must be an integer >= 1"),
        ({"WORKER_CONCURRENCY": "many"}, "WORKER_CONCURRENCY='many' is invalid"),
        ({"RETRY_BASE_DELAY": "10s", "RETRY_MAX_DELAY": "5s"}, "RETRY_MAX_DELAY (5s) must be >="),
        ({"API_BASE_URL": "ftp://x"}, "API_BASE_URL='ftp://x' is invalid"),
        ({"BULLETPROOF_DEFECTS": "typo"}, "unknown defect typo"),
        (
            {
                "STALLED_JOB_THRESHOLD": "1.2s",
                "WORKER_TIMEOUT": "1s",
                "WORKER_HEARTBEAT_INTERVAL": "200ms",
            },
            "STALLED_JOB_THRESHOLD (1.2s) must be greater than WORKER_TIMEOUT + "
            "WORKER_HEARTBEAT_INTERVAL (1.2s)",
        ),
    ],
)
def test_invalid_values_give_one_line_naming_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**URL, **env})
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_missing_database_url_says_what_to_do() -> None:
    with pytest.raises(SettingsError, match=r"PROCRASTINATE_DATABASE_URL is not set: set it to"):
        load_settings({})


def test_defects_are_parsed() -> None:
    s = load_settings({**URL, "BULLETPROOF_DEFECTS": "plain-insert, no-timeout"})
    assert s.defects == {"plain-insert", "no-timeout"}


def test_cli_rejects_bad_setting_with_exit_2_and_no_traceback() -> None:
    env = {**URL, "PATH": "/usr/bin:/bin", "STALLED_JOB_THRESHOLD": "1s", "WORKER_TIMEOUT": "1s"}
    result = subprocess.run(
        [sys.executable, "-m", "system", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("bulletproof: STALLED_JOB_THRESHOLD (1s) must be greater")
    assert "Traceback" not in result.stderr
