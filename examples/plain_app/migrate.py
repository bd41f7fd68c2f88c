"""``python -m examples.plain_app.migrate``: Procrastinate's schema (if missing) and the table."""

from __future__ import annotations

import asyncio

from examples.plain_app.tasks import app

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS plain_jokes (
    job_id  bigint NOT NULL,
    joke_id text NOT NULL,
    value   text NOT NULL
)
"""


async def main() -> None:
    async with app.open_async():
        if not await app.check_connection_async():
            await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(TABLE_DDL)


if __name__ == "__main__":
    asyncio.run(main())
