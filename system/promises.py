"""What the system promises about its own timing, as functions of its settings.

The API applies these rules and the harness imports them to derive its budgets, so the rule
a check judges by is the rule the system implements (never a second copy that can drift).
"""

from __future__ import annotations

import math

#: A heartbeat counts as fresh for this many heartbeat intervals (missing two beats in a row
#: is not yet a dead worker; missing three is).
HEARTBEAT_FRESHNESS = 3
#: ... and never for less than one interval plus this (seconds): with sub-second heartbeats a
#: loaded machine can delay one write by a few hundred milliseconds.
HEARTBEAT_FRESHNESS_FLOOR = 1.0
#: The API never waits longer than this (seconds) for the database in a request.
API_DB_TIMEOUT_CAP = 5.0


def heartbeat_freshness_limit(heartbeat_interval: float) -> float:
    """Seconds after which the freshest worker heartbeat makes ``/health`` say 503."""
    return round(
        max(
            HEARTBEAT_FRESHNESS * heartbeat_interval, heartbeat_interval + HEARTBEAT_FRESHNESS_FLOOR
        ),
        3,
    )


def api_db_timeout(db_pool_timeout: float) -> float:
    """Seconds the API waits for the database before answering 503."""
    return min(db_pool_timeout, API_DB_TIMEOUT_CAP)


#: Seconds beyond its own bounds a lost worker session may take to end (closing pools).
SESSION_TEARDOWN_MARGIN = 2.0


def session_teardown_limit(worker_timeout: float, db_pool_timeout: float) -> float:
    """Seconds a worker takes at most to end a lost session (running jobs get
    ``WORKER_TIMEOUT``, pending database calls the pool timeout) before it reconnects."""
    return worker_timeout + db_pool_timeout + SESSION_TEARDOWN_MARGIN


def libpq_connect_timeout(db_connect_timeout: float) -> int:
    """libpq's ``connect_timeout`` for ``DB_CONNECT_TIMEOUT``: whole seconds, at least 2."""
    return max(2, math.ceil(db_connect_timeout))


def heartbeat_write_budget(db_pool_timeout: float, db_connect_timeout: float) -> float:
    """Seconds the watchdog gives one heartbeat write (a pool checkout, then a connection
    attempt) before it ends the session as lost."""
    return db_pool_timeout + libpq_connect_timeout(db_connect_timeout)
