"""A plain Procrastinate app, written the way most users write one.

Nothing here is bulletproof on purpose: Procrastinate's own retry strategy, a plain INSERT,
Procrastinate's own worker (``python -m procrastinate --app examples.plain_app.tasks.app
worker``). ``examples/plain_app_bulletproof`` is the same app with our parts added.
"""

from __future__ import annotations

import logging
import os

import httpx
from procrastinate import App, JobContext, PsycopgConnector, RetryStrategy

logger = logging.getLogger(__name__)

app = App(
    connector=PsycopgConnector(conninfo=os.environ.get("DATABASE_URL", "postgresql:///plain_app"))
)


@app.task(
    name="fetch_joke",
    queue="jokes",
    pass_context=True,
    retry=RetryStrategy(max_attempts=4, wait=1),
)
async def fetch_joke(context: JobContext, category: str | None = None) -> str:
    """Fetch a random joke and store it."""
    api = os.environ.get("JOKE_API_URL", "https://api.chucknorris.io")
    params = {"category": category} if category else None
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{api}/jokes/random", params=params)
        response.raise_for_status()
        joke = response.json()
    await app.connector.execute_query_async(
        "INSERT INTO plain_jokes (job_id, joke_id, value) "
        "VALUES (%(job_id)s, %(joke_id)s, %(value)s)",
        job_id=context.job.id,
        joke_id=joke["id"],
        value=joke["value"],
    )
    logger.info("stored joke %s", joke["id"])
    return str(joke["id"])


@app.periodic(cron="* * * * *")
@app.task(name="tick")
async def tick(timestamp: int) -> None:
    """A cron task, as real apps have (its presence changes how Procrastinate's worker dies)."""
    logger.info("tick %d", timestamp)
