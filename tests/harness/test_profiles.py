"""Timing profiles agree with the SUT's settings parser."""

from __future__ import annotations

import pytest

from harness.profiles import FAST, PRODUCTION, Profile, format_env_duration, get_profile
from system.settings import Settings, load_settings

DSN = {"PROCRASTINATE_DATABASE_URL": "postgresql://x@127.0.0.1:1/db"}


@pytest.mark.parametrize("profile", [FAST, PRODUCTION], ids=lambda p: p.name)
def test_env_is_read_back_by_the_sut_as_the_same_seconds(profile: Profile) -> None:
    settings = load_settings({**profile.env(), **DSN})
    for key, value in profile.as_dict().items():
        if value is None:
            assert getattr(settings, key) is None, key
        else:
            assert getattr(settings, key) == pytest.approx(value), key


def test_production_is_the_sut_default() -> None:
    defaults = Settings(procrastinate_database_url="postgresql://x@h/db")
    for key, value in PRODUCTION.as_dict().items():
        assert getattr(defaults, key) == value, key


def test_durations_always_carry_a_unit() -> None:
    assert format_env_duration(0.2) == "200ms"
    assert format_env_duration(0.05) == "50ms"
    assert format_env_duration(2.0) == "2s"
    assert format_env_duration(1.5) == "1500ms"
    assert FAST.env()["STALLED_JOB_CHECK_INTERVAL"] == "300ms"  # a bare 0.3 would mean minutes
    assert FAST.env()["SCHEDULED_FETCH_INTERVAL"] == "off"
    assert FAST.env()["MAX_RETRIES"] == "5"


def test_replace_and_lookup() -> None:
    quick = FAST.replace(job_timeout=0.5)
    assert quick.job_timeout == 0.5 and quick["job_timeout"] == 0.5 and FAST.job_timeout == 1.5
    assert quick.env()["JOB_TIMEOUT"] == "500ms"
    with pytest.raises(ValueError, match="unknown setting job_timout"):
        FAST.replace(job_timout=1)
    with pytest.raises(ValueError, match="unknown profile 'slow'; choose one of fast, production"):
        get_profile("slow")
    assert get_profile("fast") is FAST
