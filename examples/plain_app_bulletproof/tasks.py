"""``examples/plain_app`` with bulletproof's parts added (see ``examples/README.md``).

Changed lines: a capped exponential backoff that re-queues aborted runs, an idempotent store,
stalled-job recovery, and the worker: ``python -m bulletproof worker --app
examples.plain_app_bulletproof.tasks:app --queues jokes,default``.
"""

from __future__ import annotations

import logging
import os

import httpx
from procrastinate import App, JobContext, PsycopgConnector
from procrastinate.exceptions import ConnectorException

import bulletproof

logger = logging.getLogger(__name__)

app = App(
    connector=PsycopgConnector(
        conninfo=os.environ.get("PROCRASTINATE_DATABASE_URL", "postgresql:///plain_app")
    )
)
bulletproof.register_stalled_recovery(app)  # on queue "default": re-queues a dead worker's jobs

#: 5 runs in all, like RetryStrategy(max_attempts=4); waits capped; timeouts and a lost
#: database retried, a bad payload not.
RETRY = bulletproof.ExponentialBackoffStrategy(
    max_attempts=5,
    base_delay=float(os.environ.get("RETRY_BASE_DELAY", "1")),
    max_delay=float(os.environ.get("RETRY_MAX_DELAY", "60")),
    retry_exceptions=(httpx.HTTPError, TimeoutError, ConnectorException),
)


@app.task(name="fetch_joke", queue="jokes", pass_context=True, retry=RETRY)
async def fetch_joke(context: JobContext, category: str | None = None) -> str:
    """Fetch a random joke and store it (once per job, however often the job runs)."""
    api = os.environ.get("JOKE_API_URL", "https://api.chucknorris.io")
    params = {"category": category} if category else None
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{api}/jokes/random", params=params)
        response.raise_for_status()
        joke = response.json()
    await app.connector.execute_query_async(
        "INSERT INTO plain_jokes (job_id, joke_id, value) "
        "VALUES (%(job_id)s, %(joke_id)s, %(value)s) ON CONFLICT (job_id) DO NOTHING",
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
