"""A plain Procrastinate app and its target for the generic scenarios.

The generic scenarios take it as ``--target examples.plain_app:target``.
"""

from harness.target import FAKE_API, Target

target = Target(
    name="plain_app",
    app="examples.plain_app.tasks:app",
    task="fetch_joke",
    worker=[
        "python",
        "-m",
        "procrastinate",
        "--log-level",
        "info",
        "--app",
        "examples.plain_app.tasks.app",
        "worker",
    ],
    database_env="DATABASE_URL",
    upstreams={"JOKE_API_URL": FAKE_API},
    effect_sql="SELECT job_id, joke_id FROM plain_jokes",
    migrate=["python", "-m", "examples.plain_app.migrate"],
)
