"""``python -m examples.plain_app_bulletproof.migrate``: bulletproof's migration and the table.

Idempotent and safe to run concurrently (one advisory lock); settings from the environment.
"""

from __future__ import annotations

import asyncio

import bulletproof
from examples.plain_app_bulletproof.tasks import app

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS plain_jokes (
    job_id  bigint PRIMARY KEY,
    joke_id text NOT NULL,
    value   text NOT NULL
)
"""

if __name__ == "__main__":
    raise SystemExit(
        asyncio.run(bulletproof.migrate_main(app, extra_sql=[TABLE_DDL], tables=["plain_jokes"]))
    )
