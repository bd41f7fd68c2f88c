"""Timing profiles: the SUT's settings as numbers (seconds), and the environment that sets them.

``production`` is the seed's configuration (system/settings.py's defaults). ``fast`` compresses
time so that a scenario about retries, timeouts and stalls runs in seconds; its relations are the
production ones (threshold > graceful timeout + heartbeat, max delay >= base delay).

    profile = get_profile("fast").replace(job_timeout=0.5)
    profile.job_timeout                  # 0.5 (seconds)
    profile.env()["JOB_TIMEOUT"]         # "500ms"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Fields whose value is a duration in seconds (rendered with a unit in the environment).
DURATIONS = frozenset(
    {
        "retry_base_delay",
        "retry_max_delay",
        "job_timeout",
        "worker_timeout",
        "stalled_job_check_interval",
        "stalled_job_threshold",
        "worker_heartbeat_interval",
        "worker_poll_interval",
        "health_check_interval",
        "scheduled_fetch_interval",
        "db_pool_timeout",
        "db_connect_timeout",
        "db_reconnect_max_delay",
    }
)


def format_env_duration(seconds: float) -> str:
    """Seconds as the SUT reads them: ``200ms``, ``2s`` (always with a unit: a bare number
    means minutes for STALLED_JOB_CHECK_INTERVAL)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    millis = round(seconds * 1000, 3)
    return f"{int(millis) if millis == int(millis) else millis}ms"


@dataclass(frozen=True)
class Profile:
    """One timing profile; every duration in seconds. ``profile["job_timeout"]`` also works."""

    name: str
    max_retries: int
    retry_base_delay: float
    retry_max_delay: float
    job_timeout: float
    worker_concurrency: int
    worker_timeout: float
    stalled_job_check_interval: float
    stalled_job_threshold: float
    worker_heartbeat_interval: float
    worker_poll_interval: float
    health_check_interval: float
    scheduled_fetch_interval: float | None  # None: no scheduled fetch
    db_pool_size: int
    db_pool_timeout: float
    db_connect_timeout: float
    db_reconnect_max_delay: float

    def __getitem__(self, key: str) -> Any:
        if key == "name" or key not in self.as_dict():
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        """The settings (without the name), durations in seconds: for the history's meta."""
        values = dataclasses.asdict(self)
        values.pop("name")
        return values

    def replace(self, **changes: Any) -> Profile:
        """A copy with some settings changed (in seconds), e.g. ``replace(job_timeout=0.5)``."""
        unknown = set(changes) - set(self.as_dict())
        if unknown:
            raise ValueError(
                f"unknown setting {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(self.as_dict()))}"
            )
        return dataclasses.replace(self, **changes)

    def env(self) -> dict[str, str]:
        """The environment variables that give the SUT these settings."""
        env = {}
        for key, value in self.as_dict().items():
            if value is None:
                text = "off"
            elif key in DURATIONS:
                text = format_env_duration(float(value))
            else:
                text = str(value)
            env[key.upper()] = text
        return env


PRODUCTION = Profile(
    name="production",
    max_retries=5,
    retry_base_delay=2.0,
    retry_max_delay=300.0,
    job_timeout=300.0,
    worker_concurrency=10,
    worker_timeout=30.0,
    stalled_job_check_interval=600.0,
    stalled_job_threshold=600.0,
    worker_heartbeat_interval=10.0,
    worker_poll_interval=5.0,
    health_check_interval=300.0,
    scheduled_fetch_interval=3600.0,
    db_pool_size=20,
    db_pool_timeout=30.0,
    db_connect_timeout=5.0,
    db_reconnect_max_delay=30.0,
)

FAST = Profile(
    name="fast",
    max_retries=5,
    retry_base_delay=0.3,
    retry_max_delay=2.4,
    job_timeout=1.5,
    worker_concurrency=10,
    worker_timeout=1.0,
    stalled_job_check_interval=0.3,
    stalled_job_threshold=2.0,
    worker_heartbeat_interval=0.2,
    worker_poll_interval=0.05,
    health_check_interval=0.5,
    scheduled_fetch_interval=None,
    db_pool_size=10,
    db_pool_timeout=2.0,
    db_connect_timeout=1.0,
    db_reconnect_max_delay=1.0,
)

PROFILES = {p.name: p for p in (FAST, PRODUCTION)}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; ValueError (one line naming the choices) if unknown."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None
