"""The HTTP API (FastAPI): submit jobs, read a job and its events, health and statistics.

Every database call is bounded (``min(DB_POOL_TIMEOUT, 5 s)``): while the database is away
the API keeps answering, with 503 and the reason, instead of hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import uvicorn
from fastapi import Body, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from procrastinate import App
from procrastinate.exceptions import ConnectorException
from pydantic import BaseModel, Field

from system import db
from system.defects import Defect
from system.promises import api_db_timeout, heartbeat_freshness_limit
from system.settings import Settings
from system.tasks import FETCH_TASK, build_app
from system.worker import Supervisor, install_stop_signals

logger = logging.getLogger("system.api")

T = TypeVar("T")
R = TypeVar("R")

#: What "the database is not answering" looks like from here.
_DOWN: tuple[type[BaseException], ...] = (*db.DB_ERRORS, TimeoutError, ConnectorException)


class FetchJokeRequest(BaseModel):
    """Body of ``POST /tasks/fetch-joke`` (optional)."""

    model_config = {"extra": "forbid"}

    category: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="a joke category, e.g. dev",
    )


async def bounded(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Await ``coro`` for at most ``timeout`` seconds, then raise ``TimeoutError``.

    Unlike ``asyncio.timeout`` this does not wait for the cancellation to finish: psycopg
    cancels a query on a blackholed connection by trying the server for up to 10 s.
    """
    task = asyncio.create_task(coro)
    task.add_done_callback(db.retrieve_outcome)
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        task.cancel()
        raise TimeoutError(f"no answer from the database within {timeout:g}s")
    return task.result()


def create_api(settings: Settings, app: App | None = None) -> FastAPI:
    """The FastAPI application; ``app`` (opened by the lifespan) defers and reads jobs."""
    procrastinate_app = app or build_app(settings, db.api_connector(settings))
    timeout = api_db_timeout(settings.db_pool_timeout)
    defects = settings.defects
    submissions = 0  # for the ack-without-queue defect
    if defects:
        logger.warning(
            "!!! DELIBERATE DEFECTS ENABLED: %s. This API is broken on purpose "
            "(BULLETPROOF_DEFECTS); never run it for real. !!!",
            ", ".join(sorted(defects)),
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # a null pool: opening it does not connect, so the API starts with the database down
        async with procrastinate_app.open_async():
            yield

    api = FastAPI(title="bulletproof", lifespan=lifespan)

    async def read(query: Callable[..., Awaitable[R]], *args: Any) -> R:
        async with db.pool_of(procrastinate_app).connection() as conn:
            return await query(conn, *args)

    def unavailable(exc: BaseException) -> JSONResponse:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        return JSONResponse({"detail": "database unavailable", "error": reason}, status_code=503)

    @api.post("/tasks/fetch-joke", status_code=202)
    async def fetch_joke(
        body: Annotated[FetchJokeRequest | None, Body()] = None,
    ) -> Any:
        nonlocal submissions
        submissions += 1
        kwargs = {"category": body.category} if body and body.category else {}
        try:
            if Defect.ACK_WITHOUT_QUEUE in defects and submissions % 2 == 0:
                return {"job_id": await bounded(read(db.reserve_job_id), timeout)}
            deferrer = procrastinate_app.configure_task(FETCH_TASK)
            job_id = await bounded(deferrer.defer_async(**kwargs), timeout)
        except _DOWN as exc:
            return unavailable(exc)
        return {"job_id": job_id}

    @api.get("/jobs/{job_id}")
    async def get_job(job_id: int) -> Any:
        try:
            job = await bounded(read(db.job_detail, job_id), timeout)
        except _DOWN as exc:
            return unavailable(exc)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id}")
        return job

    @api.get("/stats")
    async def stats() -> Any:
        try:
            return await bounded(read(db.stats), timeout)
        except _DOWN as exc:
            return unavailable(exc)

    @api.get("/health")
    async def health() -> JSONResponse:
        hb = settings.worker_heartbeat_interval
        # a few intervals, and at least one second over one interval (scheduling noise)
        limit = heartbeat_freshness_limit(hb)
        if Defect.HEALTH_ALWAYS_OK in defects:
            return JSONResponse({"status": "ok"})
        try:
            workers, age = await bounded(read(db.heartbeat_age), timeout)
        except _DOWN as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "database": f"error: {type(exc).__name__}: {str(exc).strip()[:200]}",
                    "workers": None,
                    "heartbeat_age": None,
                },
                status_code=503,
            )
        fresh = (age is not None and age <= limit) or Defect.HEALTH_IGNORES_HEARTBEAT in defects
        body = {
            "status": "ok" if fresh else "unavailable",
            "database": "ok",
            "workers": workers,
            "heartbeat_age": age,
            "heartbeat_limit": limit,
        }
        if not fresh:
            body["worker"] = (
                "no worker registered"
                if age is None
                else f"freshest heartbeat is {age:.1f}s old (limit {limit:g}s)"
            )
        return JSONResponse(body, status_code=200 if fresh else 503)

    return api


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ours stops the worker and the server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def run_api(
    settings: Settings,
    *,
    host: str,
    port: int,
    with_worker: bool,
    worker_name: str | None = None,
) -> int:
    """``python -m system api``: serve the API (and, by default, a worker in-process)."""
    server = _Server(
        uvicorn.Config(
            create_api(settings),
            host=host,
            port=port,
            log_level="info",
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(settings.worker_timeout)),
        )
    )
    supervisor = Supervisor(settings, worker_name) if with_worker else None

    def stop(reason: str) -> None:
        logger.info("%s: stopping the API", reason)
        server.should_exit = True
        if supervisor is not None:
            supervisor.request_stop(reason)

    install_stop_signals(stop)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(server.serve(), name="api")]
    if supervisor is not None:
        tasks.append(asyncio.create_task(supervisor.run(), name="worker"))
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if tasks[0] in done and not server.should_exit:
        logger.error("the API server stopped by itself (port %d taken?)", port)
        code = 1
        stop("API server stopped")
    if supervisor is not None and tasks[1] in done and not supervisor.stopping:
        code = tasks[1].result() or 1
        stop("worker exited")
    results = await asyncio.gather(*tasks, return_exceptions=True)
    if supervisor is not None and isinstance(results[1], int) and results[1] != 0:
        code = results[1]
    if isinstance(results[0], BaseException):
        logger.error("API server failed: %s", results[0])
        code = code or 1
    return code
