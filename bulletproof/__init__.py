"""bulletproof: the reference worker's parts, for your own Procrastinate app.

    # mypkg/tasks.py
    import bulletproof
    from procrastinate import App, PsycopgConnector

    app = App(connector=PsycopgConnector(conninfo=...))
    bulletproof.register_stalled_recovery(app)  # re-queues jobs of workers that died

    @app.task(queue="jokes", retry=bulletproof.ExponentialBackoffStrategy(5, 2.0, 300.0))
    async def fetch(...): ...

Then ``python -m bulletproof migrate --app mypkg.tasks:app`` and
``python -m bulletproof worker --app mypkg.tasks:app --queues jokes,default``; settings come
from the environment (``PROCRASTINATE_DATABASE_URL``, ``WORKER_TIMEOUT``, ...), as for
``python -m system``. The import name is ``bulletproof``; ``system`` and ``harness`` are the
project's own packages.
"""

from bulletproof.core import (
    AppError,
    check_stalled_recovery,
    load_app,
    migrate,
    migrate_main,
    supervise,
)
from system.retry import ExponentialBackoffStrategy
from system.settings import Settings, SettingsError, load_settings
from system.tasks import STALLED_TASK, recover_stalled_jobs, register_stalled_recovery
from system.worker import Supervisor, adopt_app

__all__ = [
    "STALLED_TASK",
    "AppError",
    "ExponentialBackoffStrategy",
    "Settings",
    "SettingsError",
    "Supervisor",
    "adopt_app",
    "check_stalled_recovery",
    "load_app",
    "load_settings",
    "migrate",
    "migrate_main",
    "recover_stalled_jobs",
    "register_stalled_recovery",
    "supervise",
]
