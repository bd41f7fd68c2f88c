"""Settings from environment variables, with the seed's names and defaults.

Durations accept ``500ms``, ``2s``, ``10m``, ``1h`` or a bare number: seconds, except
``STALLED_JOB_CHECK_INTERVAL`` whose bare number means minutes (as the seed documents).
``SCHEDULED_FETCH_INTERVAL`` also accepts ``0`` or ``off`` (no scheduled fetch).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from system.defects import Defect, parse_defects
from system.durations import format_duration, parse_duration
from system.promises import libpq_connect_timeout

#: Deliberate defects (system/defects.py) that exist only to show the checker catching them.
KNOWN_DEFECTS = frozenset(d.value for d in Defect)

_POSITIVE_DURATIONS = (
    "retry_base_delay",
    "retry_max_delay",
    "job_timeout",
    "worker_timeout",
    "stalled_job_threshold",
    "worker_heartbeat_interval",
    "worker_poll_interval",
    "health_check_interval",
    "db_pool_timeout",
    "db_connect_timeout",
    "db_reconnect_max_delay",
)


class SettingsError(ValueError):
    """A setting is missing or invalid; ``str()`` is one line naming the variable and rule."""


class Settings(BaseSettings):
    """Every knob of the SUT. Durations are stored in seconds (floats)."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    procrastinate_database_url: str
    api_base_url: str = "https://api.chucknorris.io"
    max_retries: int = 5
    retry_base_delay: float = 2.0
    retry_max_delay: float = 300.0
    job_timeout: float = 300.0
    worker_concurrency: int = 10
    worker_timeout: float = 30.0
    stalled_job_check_interval: float = 600.0
    stalled_job_threshold: float = 600.0
    worker_heartbeat_interval: float = 10.0
    worker_poll_interval: float = 5.0
    health_check_interval: float = 300.0
    scheduled_fetch_interval: float | None = 3600.0
    db_pool_size: int = 20
    db_pool_timeout: float = 30.0
    db_connect_timeout: float = 5.0
    db_reconnect_max_delay: float = 30.0
    bulletproof_defects: str = ""

    # -- HTTP API limits (issue 11; documented in system/README.md) ---------------------------
    api_max_body_bytes: int = 4096
    api_header_timeout: float = 10.0
    api_body_timeout: float = 10.0
    api_keepalive_timeout: float = 5.0
    api_max_connections: int = 256
    api_log_rate: int = 20
    api_log_burst: int = 200

    @field_validator(
        "api_header_timeout", "api_body_timeout", "api_keepalive_timeout", mode="before"
    )
    @classmethod
    def _api_duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if not 0 < seconds <= 3600:
            raise ValueError("must be a positive duration up to 1h, such as 500ms, 2s or 10s")
        return seconds

    @field_validator("api_max_body_bytes")
    @classmethod
    def _api_body(cls, value: int) -> int:
        if not 64 <= value <= 16 * 1024 * 1024:
            raise ValueError("must be an integer from 64 to 16777216 (bytes)")
        return value

    @field_validator("api_max_connections", "api_log_rate", "api_log_burst")
    @classmethod
    def _api_count(cls, value: int) -> int:
        if not 1 <= value <= 1_000_000:
            raise ValueError("must be an integer from 1 to 1000000")
        return value

    # -- end of the HTTP API limits -----------------------------------------------------------

    @field_validator(*_POSITIVE_DURATIONS, mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if not seconds > 0:
            raise ValueError("must be a positive duration such as 500ms, 2s or 10m")
        return seconds

    @field_validator("stalled_job_check_interval", mode="before")
    @classmethod
    def _minutes(cls, value: Any) -> float:
        # Only text (the environment) reads a bare number as minutes; the default is seconds.
        seconds = parse_duration(value, bare_unit="m" if isinstance(value, str) else "s")
        if not seconds > 0:
            raise ValueError("must be a positive duration (a bare number means minutes)")
        return seconds

    @field_validator("scheduled_fetch_interval", mode="before")
    @classmethod
    def _optional_interval(cls, value: Any) -> float | None:
        if value is None or (isinstance(value, str) and value.strip().lower() in {"off", "0"}):
            return None
        seconds = parse_duration(value)
        return seconds if seconds > 0 else None

    @field_validator("max_retries", "worker_concurrency", "db_pool_size")
    @classmethod
    def _at_least_one(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be an integer >= 1")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("procrastinate_database_url")
    @classmethod
    def _pg_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a PostgreSQL URL such as postgresql://user@127.0.0.1/db")
        return value

    @field_validator("bulletproof_defects")
    @classmethod
    def _defects(cls, value: str) -> str:
        parse_defects(value)  # raises ValueError naming the unknown ones and the known ones
        return value

    @model_validator(mode="after")
    def _relations(self) -> Settings:
        if self.retry_max_delay < self.retry_base_delay:
            raise SettingsError(
                f"RETRY_MAX_DELAY ({format_duration(self.retry_max_delay)}) must be >= "
                f"RETRY_BASE_DELAY ({format_duration(self.retry_base_delay)})"
            )
        floor = self.worker_timeout + self.worker_heartbeat_interval
        if self.stalled_job_threshold <= floor:
            raise SettingsError(
                f"STALLED_JOB_THRESHOLD ({format_duration(self.stalled_job_threshold)}) must be "
                f"greater than WORKER_TIMEOUT + WORKER_HEARTBEAT_INTERVAL "
                f"({format_duration(floor)}), or jobs still finishing during a graceful "
                f"shutdown are re-run"
            )
        return self

    @property
    def defects(self) -> frozenset[Defect]:
        """The deliberate defects switched on (normally none)."""
        return parse_defects(self.bulletproof_defects)

    @property
    def connect_timeout_arg(self) -> int:
        """libpq's ``connect_timeout`` is whole seconds, at least 2."""
        return libpq_connect_timeout(self.db_connect_timeout)


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = err.get("loc") or ()
    name = str(loc[0]).upper() if loc else ""
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "missing":
        hint = (
            "set it to a PostgreSQL URL such as postgresql://user@127.0.0.1:5432/db"
            if name == "PROCRASTINATE_DATABASE_URL"
            else "set it"
        )
        return f"{name} is not set: {hint}"
    if not name:
        return msg
    return f"{name}={err.get('input')!r} is invalid: {msg}"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default: the process environment).

    Raises :class:`SettingsError` with one line naming the variable and the rule.
    """
    try:
        if environ is None:
            return Settings()  # type: ignore[call-arg]  # values come from os.environ
        fields = Settings.model_fields
        values = {k.lower(): v for k, v in environ.items() if k.lower() in fields}
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
