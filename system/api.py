"""The HTTP API (FastAPI): submit jobs, read a job and its events, health and statistics.

Every database call is bounded (``min(DB_POOL_TIMEOUT, 5 s)``): while the database is away
the API keeps answering, with 503 and the reason, instead of hanging. Hostile input gets a
clear 4xx that never echoes the input back; the HTTP server's limits are in
:mod:`system.httplimits`. The OpenAPI document declares every status and response schema,
and links a submission's 202 to ``GET /jobs/{job_id}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Annotated, Any, Literal, TypeVar

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from procrastinate import App
from procrastinate.exceptions import ConnectorException
from pydantic import BaseModel, BeforeValidator, Field

from system import db
from system.defects import Defect
from system.httplimits import (
    BACKLOG,
    BodyLimit,
    connection_cap,
    limit_log_rate,
    limited_protocol,
)
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


class JobAccepted(BaseModel):
    """202 answer of ``POST /tasks/fetch-joke``."""

    job_id: int


class JobEvent(BaseModel):
    type: str
    at: datetime.datetime


class Job(BaseModel):
    """A job and its events (``procrastinate_events``), as ``GET /jobs/{job_id}`` shows it."""

    id: int
    task: str
    queue: str
    status: str
    attempts: int
    args: dict[str, Any]
    scheduled_at: datetime.datetime | None
    events: list[JobEvent]


class Stats(BaseModel):
    jobs: dict[str, int] = Field(description="jobs by status")
    jokes_stored: int
    retries: int
    stalled_recoveries: int


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str
    workers: int | None
    heartbeat_age: float | None
    heartbeat_limit: float | None = None
    worker: str | None = Field(default=None, description="why the worker is not fresh")


class Problem(BaseModel):
    """An error: what is wrong (``detail``) and, for 503, the underlying error."""

    detail: str
    error: str | None = None


class FieldProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(BaseModel):
    """422: the fields that are wrong (the input itself is never echoed back)."""

    detail: list[FieldProblem]


#: Largest job id: procrastinate_jobs.id is a PostgreSQL bigint.
BIGINT_MAX = 2**63 - 1
#: At most this many field problems in a 422; each text cut to this many characters.
MAX_PROBLEMS = 10
MAX_PROBLEM_CHARS = 200


def _digits_only(value: Any) -> Any:
    # int("1_0") == int(" 1") == int("+1") == int("١") == 1: an id is plain ASCII digits
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("a job id is a positive integer written with digits 0-9 only")
    return value


JobId = Annotated[
    int,
    Path(ge=1, le=BIGINT_MAX, description="job id: digits only, 1 to 2^63-1"),
    BeforeValidator(_digits_only),
]


def _clip(value: object, limit: int = MAX_PROBLEM_CHARS) -> str:
    """``value`` as text that always encodes (lone surrogates escaped), at most ``limit`` long."""
    text = str(value).encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def field_problems(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors as bounded ``{loc, msg, type}`` items, without the input."""
    problems = []
    for err in errors[:MAX_PROBLEMS]:
        loc = [p if isinstance(p, int) else _clip(p, 64) for p in err.get("loc", ())][:8]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        ctx = err.get("ctx") or {}
        if err.get("type") == "json_invalid" and "error" in ctx:
            msg = f"{msg}: {ctx['error']}"
        problems.append({"loc": loc, "msg": _clip(msg), "type": _clip(err.get("type", ""), 64)})
    if len(errors) > MAX_PROBLEMS:
        more = f"{len(errors) - MAX_PROBLEMS} more problems not shown"
        problems.append({"loc": [], "msg": more, "type": "too_many_problems"})
    return problems


def _answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for error statuses, each with its JSON schema."""
    text = {
        400: "the body could not be read (not UTF-8)",
        404: "no such job",
        408: "the request body did not arrive in time (API_BODY_TIMEOUT)",
        413: "the request body is too large (API_MAX_BODY_BYTES)",
        422: "invalid input: which fields and why",
        503: "the database is unavailable (the reason is in `error`)",
    }
    return {
        code: {
            "model": ValidationProblem if code == 422 else Problem,
            "description": text[code],
        }
        for code in statuses
    }


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

    api = FastAPI(
        title="bulletproof",
        summary="submit joke-fetching jobs, follow them, see the system's health",
        version="1",
        lifespan=lifespan,
    )

    @api.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input (unbounded, and it cannot encode lone
        # surrogates or NaN: a 500); this one names the fields and the rule only.
        return JSONResponse({"detail": field_problems(exc.errors())}, status_code=422)

    async def read(query: Callable[..., Awaitable[R]], *args: Any) -> R:
        async with db.pool_of(procrastinate_app).connection() as conn:
            return await query(conn, *args)

    def unavailable(exc: BaseException) -> JSONResponse:
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        return JSONResponse({"detail": "database unavailable", "error": reason}, status_code=503)

    @api.post(
        "/tasks/fetch-joke",
        status_code=202,
        operation_id="fetch_joke",
        response_model=JobAccepted,
        responses={
            202: {
                "description": "the job is queued",
                "links": {
                    "GetJob": {
                        "operationId": "get_job",
                        "parameters": {"job_id": "$response.body#/job_id"},
                        "description": "the job just submitted",
                    }
                },
            },
            **_answers(400, 408, 413, 422, 503),
        },
    )
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

    @api.get(
        "/jobs/{job_id}",
        operation_id="get_job",
        response_model=Job,
        responses=_answers(404, 422, 503),
    )
    async def get_job(job_id: JobId) -> Any:
        try:
            job = await bounded(read(db.job_detail, job_id), timeout)
        except _DOWN as exc:
            return unavailable(exc)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job with id {job_id}")
        return job

    @api.get("/stats", operation_id="stats", response_model=Stats, responses=_answers(503))
    async def stats() -> Any:
        try:
            return await bounded(read(db.stats), timeout)
        except _DOWN as exc:
            return unavailable(exc)

    @api.get(
        "/health",
        operation_id="health",
        response_model=Health,
        responses={503: {"model": Health, "description": "database or worker not healthy"}},
    )
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


def limited_app(api: FastAPI, settings: Settings) -> BodyLimit:
    """``api`` behind the request-body limits (size and read time)."""
    return BodyLimit(api, max_bytes=settings.api_max_body_bytes, timeout=settings.api_body_timeout)


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
    # the API's own (null) pool and the in-process worker's pool: db_pool_size each at most
    db_connections = settings.db_pool_size * (2 if with_worker else 1)
    max_connections = connection_cap(settings.api_max_connections, db_connections=db_connections)
    if max_connections < settings.api_max_connections:
        logger.warning(
            "API_MAX_CONNECTIONS=%d lowered to %d: the open-files limit (ulimit -n) is too low",
            settings.api_max_connections,
            max_connections,
        )
    server = _Server(
        uvicorn.Config(
            limited_app(create_api(settings), settings),
            host=host,
            port=port,
            log_level="info",
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(settings.worker_timeout)),
            http=limited_protocol(
                header_timeout=settings.api_header_timeout, max_connections=max_connections
            ),
            # uvicorn's own bound on requests in flight (503); our cap closes extra
            # connections before they can hold a file descriptor
            limit_concurrency=max_connections + 1,
            backlog=BACKLOG,
            timeout_keep_alive=max(1, round(settings.api_keepalive_timeout)),
        )
    )
    # after uvicorn.Config: it (re)configures the uvicorn loggers
    limit_log_rate(settings.api_log_rate, settings.api_log_burst)
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
