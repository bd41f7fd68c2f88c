"""``examples.plain_app`` with bulletproof's parts, and its target for the generic scenarios.

The generic scenarios take it as ``--target examples.plain_app_bulletproof:target``. Its
``env`` compresses the worker's timings the way the harness's ``fast`` profile does.
"""

from bulletproof.chaos import FAKE_API, Target

#: Compressed timings (harness/profiles.py FAST, with polling and heartbeats a little slower).
FAST_ENV = {
    "RETRY_BASE_DELAY": "0.3",
    "RETRY_MAX_DELAY": "2.4",
    "WORKER_TIMEOUT": "1s",
    "STALLED_JOB_THRESHOLD": "2s",
    "STALLED_JOB_CHECK_INTERVAL": "500ms",  # a bare number here would mean minutes
    "WORKER_HEARTBEAT_INTERVAL": "500ms",
    "WORKER_POLL_INTERVAL": "500ms",
    "DB_POOL_TIMEOUT": "2s",
    "DB_CONNECT_TIMEOUT": "1s",
    "DB_RECONNECT_MAX_DELAY": "1s",
}

target = Target(
    name="plain_app_bulletproof",
    app="examples.plain_app_bulletproof.tasks:app",
    task="fetch_joke",
    worker=[
        "python",
        "-m",
        "bulletproof",
        "worker",
        "--app",
        "examples.plain_app_bulletproof.tasks:app",
        "--queues",
        "jokes,default",
    ],
    env=FAST_ENV,
    database_env="PROCRASTINATE_DATABASE_URL",
    upstreams={"JOKE_API_URL": FAKE_API},
    effect_sql="SELECT job_id, joke_id FROM plain_jokes",
    migrate=["python", "-m", "examples.plain_app_bulletproof.migrate"],
    # Our promise, from the timings above: a dead worker's job runs again within heartbeat
    # 0.5 + threshold 2 + check 0.5 + poll 0.5 s (3.5 s); after the database is back, within
    # connect 1 + reconnect delay 1 + heartbeat 0.5 + poll 0.5 s (3 s) plus a retry wait of up
    # to 2.4 s (a retry is judged from its retry time). 6 s leaves room for a loaded machine.
    # Measured: 1.5 to 2.0 s.
    recovery_budget=6.0,
    # our orchestrator's grace between SIGTERM and SIGKILL; WORKER_TIMEOUT (1 s) is below it
    shutdown_grace=3.0,
    # each worker serves GET /health on the port the harness puts here (--health-port's env);
    # our promise: 503 within the heartbeat freshness limit (max(3 x 0.5, 0.5 + 1) = 1.5 s),
    # with room for a failing reconnect (DB_CONNECT_TIMEOUT 1 s): 3 s
    health_port_env="BULLETPROOF_HEALTH_PORT",
    health_budget=3.0,
)
