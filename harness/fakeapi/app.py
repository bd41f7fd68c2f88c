"""The fake api.chucknorris.io: a Starlette app with scripted faults and a request record.

Only starlette and the standard library are used, so the server also runs in a plain Debian
container with ``python3-starlette`` and ``python3-uvicorn``. See docs/DESIGN.md for the contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: A category the upstream always answers 500 for (a server bug for one input): a job asking
#: for it is retried until it has no runs left, then fails. Not listed in ``/jokes/categories``.
FAILING_CATEGORY = "outage"

#: A category the upstream never answers in time: held for ``STUCK_FOR`` seconds (or until
#: the client gives up), then 504. A job asking for it times out on every run.
STUCK_CATEGORY = "stuck"
STUCK_FOR = 60.0

CATEGORIES = [
    "animal",
    "career",
    "celebrity",
    "dev",
    "explicit",
    "fashion",
    "food",
    "history",
    "money",
    "movie",
    "music",
    "political",
    "religion",
    "science",
    "sport",
    "travel",
]
DEFAULT_POOL_SIZE = 100_000
#: Bounds of the control API's numbers: beyond them a typo, never a useful fault.
MAX_POOL_SIZE = 1_000_000
MAX_COUNT = 1_000_000
MAX_DURATION = 86_400.0  # a day
MAX_DELAY = 3_600.0  # an hour; SIGTERM still ends a slow or hung request at once
MAX_PATH_LENGTH = 256
#: Largest control request body (a fault is a few dozen bytes).
MAX_CONTROL_BODY = 64 * 1024
FAULT_KINDS = ("status", "slow", "hang", "malformed")
ICON_URL = "https://api.chucknorris.io/img/avatar/chuck-norris.png"
_VERBS = ["count to", "divide by", "slam", "unit-test", "outrun", "compile", "delete", "hear"]
_OBJECTS = ["infinity", "zero", "a revolving door", "the sun", "his own shadow", "PostgreSQL"]
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class FaultError(ValueError):
    """A fault specification the control API rejects (400)."""


class BodyTooLarge(FaultError):
    """A control request body over :data:`MAX_CONTROL_BODY` (413)."""


def _show(value: Any, limit: int = 40) -> str:
    """``value`` for an error message: ASCII only (lone surrogates escaped), truncated."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    """``body[name]`` as a finite number in [low, high] (None if absent), else FaultError."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FaultError(f"{name} must be a number of seconds, not {_show(value)}")
    if not low <= value <= high:
        raise FaultError(f"{name} must be between {low:g} and {high:g} seconds, not {value:g}")
    return float(value)


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """``value`` as an integer in [low, high] (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FaultError(f"{name} must be an integer from {low:_} to {high:_}, not {_show(value)}")
    return value


def _refuse_constant(token: str) -> Any:
    raise FaultError(f"{token} is not a JSON number; send a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise FaultError(f"{_show(text, 30)} is too large; send a finite number")
    return value


async def read_json(request: Request, limit: int = MAX_CONTROL_BODY) -> Any:
    """The request body as strict JSON (no NaN/Infinity, finite numbers, at most ``limit``
    bytes); raises :class:`FaultError` (or :class:`BodyTooLarge`) naming what is wrong."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"the body is over {limit} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise BodyTooLarge(f"the body is over {limit} bytes")
    try:
        return json.loads(bytes(data), parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise FaultError("the JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise FaultError("the body is not UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise FaultError(f"the body is not JSON: {exc.msg} at position {exc.pos}") from None


@dataclass
class Fault:
    """One scripted application fault; active while ``remaining`` > 0 and before ``until``."""

    id: int
    kind: str
    status: int | None = None
    retry_after: float | None = None
    delay: float | None = None
    remaining: int | None = None
    until: float | None = None
    path: str = "/jokes"

    @classmethod
    def parse(cls, fault_id: int, body: Any, now: float) -> Fault:
        if not isinstance(body, dict):
            raise FaultError("a fault is a JSON object such as {'kind': 'status', 'status': 503}")
        kind = body.get("kind")
        if kind not in FAULT_KINDS:
            raise FaultError(f"kind must be one of {', '.join(FAULT_KINDS)}, not {_show(kind)}")
        unknown = set(body) - {
            "kind",
            "status",
            "retry_after",
            "delay",
            "count",
            "duration",
            "path",
        }
        if unknown:
            shown = ", ".join(_show(k, 30) for k in sorted(unknown)[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise FaultError(f"unknown fault fields: {shown}{more}")
        count, duration = body.get("count"), _number(body, "duration", 0.0, MAX_DURATION)
        if count is None and duration is None:
            raise FaultError("give 'count' (next N requests) or 'duration' (seconds from now)")
        if count is not None:
            count = _integer(count, "count", 1, MAX_COUNT)
        if duration is not None and duration <= 0:
            raise FaultError("duration must be a positive number of seconds")
        status = body.get("status")
        if kind == "status" or status is not None:
            try:
                status = _integer(status, "status", 400, 599)
            except FaultError:
                raise FaultError("a status fault needs 'status' between 400 and 599") from None
        delay = _number(body, "delay", 0.0, MAX_DELAY)
        if kind == "slow" and delay is None:
            raise FaultError(f"a slow fault needs 'delay' in seconds (0 to {MAX_DELAY:g})")
        retry_after = _number(body, "retry_after", 0.0, MAX_DURATION)
        path = body.get("path", "/jokes")
        if (
            not isinstance(path, str)
            or not path.startswith("/")
            or len(path) > MAX_PATH_LENGTH
            or not path.isprintable()
            or any(0xD800 <= ord(c) <= 0xDFFF for c in path)
        ):
            raise FaultError(
                f"path must be a path prefix such as /jokes/random "
                f"(at most {MAX_PATH_LENGTH} printable characters), not {_show(path)}"
            )
        raw_retry_after = body.get("retry_after")  # an int stays an int in the header
        return cls(
            id=fault_id,
            kind=kind,
            status=status if kind == "status" else None,
            retry_after=raw_retry_after if retry_after is not None else None,
            delay=delay if kind == "slow" else None,
            remaining=count,
            until=now + duration if duration is not None else None,
            path=path,
        )

    def active(self, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return self.until is None or now < self.until

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class State:
    """Everything the control API can change; reset with :meth:`reset`."""

    seed: int
    pool_size: int = DEFAULT_POOL_SIZE
    faults: list[Fault] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    next_fault_id: int = 1
    rng: random.Random = field(init=False)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server begins to shut down: slow and hung requests end at once."""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def reset(self) -> None:
        self.pool_size = DEFAULT_POOL_SIZE
        self.faults.clear()
        self.requests.clear()
        self.next_fault_id = 1
        self.rng = random.Random(self.seed)

    def take_fault(self, path: str) -> Fault | None:
        """The first active fault for ``path``; a count-limited one is used up by one."""
        now = time.time()
        self.faults = [f for f in self.faults if f.active(now)]
        for fault in self.faults:
            if path.startswith(fault.path):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None


def joke_id(seed: int, index: int) -> str:
    """The id of joke ``index`` under ``seed``: 22 base62 characters like the real API's."""
    number = int.from_bytes(hashlib.sha256(f"{seed}:{index}".encode()).digest()[:17], "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)


def make_joke(seed: int, index: int, category: str | None = None) -> dict[str, Any]:
    """Joke ``index``: the same id, text and times for the same seed, like a stored joke."""
    rng = random.Random(f"{seed}:{index}")
    ident = joke_id(seed, index)
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1_578_000_000 + index * 61))
    own_category = CATEGORIES[index % len(CATEGORIES)] if index % 3 == 0 else None
    chosen = category or own_category
    return {
        "categories": [chosen] if chosen else [],
        "created_at": f"{created}.{index % 1_000_000:06d}",
        "icon_url": ICON_URL,
        "id": ident,
        "updated_at": f"{created}.{index % 1_000_000:06d}",
        "url": f"https://api.chucknorris.io/jokes/{ident}",
        "value": f"Chuck Norris can {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} (#{index}).",
    }


def _not_found(path: str) -> JSONResponse:
    body = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime()),
        "status": 404,
        "error": "Not Found",
        "path": path,
    }
    return JSONResponse(body, status_code=404)


def _refused(exc: FaultError) -> JSONResponse:
    status = 413 if isinstance(exc, BodyTooLarge) else 400
    return JSONResponse({"error": str(exc)}, status_code=status)


def create_app(seed: int = 0) -> Starlette:
    """The ASGI app; ``app.state.fake`` is its :class:`State`."""
    state = State(seed)

    async def serve(request: Request) -> Response:
        # Wall-clock start (histories align on it), duration on the monotonic clock the
        # faults' sleeps use: wall-clock slew could make a 0.4 s hold measure 0.3999 s.
        t_start = time.time()
        started = time.monotonic()
        record: dict[str, Any] = {
            "t_start": t_start,
            "t_end": None,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "status": None,
            "outcome": "ok",
            "joke_id": None,
            "fault": None,
        }
        try:
            response = await _answer(request, record)
        except Exception as exc:  # recorded, then answered as the real API would: a 500
            record["outcome"] = "error"
            response = JSONResponse({"status": 500, "error": str(exc)}, status_code=500)
        record["status"] = record["status"] or response.status_code
        record["t_end"] = t_start + (time.monotonic() - started)
        state.requests.append(record)
        return response

    async def _pause(seconds: float) -> None:
        """Sleep ``seconds``, or less if the server starts shutting down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.stopping.wait(), timeout=seconds)

    async def _hold(request: Request, record: dict[str, Any], end: float) -> Response:
        """Hold the request until ``end``, the client gives up or the server stops; a client
        that waited gets a 504."""
        while time.time() < end and not state.stopping.is_set():
            if await request.is_disconnected():
                record["status"] = 499  # nginx's "client closed request"
                return Response(status_code=499)
            await _pause(min(0.05, max(0.0, end - time.time())))
        return JSONResponse({"status": 504, "error": "hang ended"}, status_code=504)

    async def _answer(request: Request, record: dict[str, Any]) -> Response:
        fault = state.take_fault(request.url.path)
        if fault is not None:
            record["fault"] = fault.kind
            if fault.kind == "status":
                record["outcome"] = "fault"
                headers = {}
                if fault.retry_after is not None:
                    # Whole seconds as HTTP says; a fraction (compressed time) is sent as is.
                    value = fault.retry_after
                    headers["Retry-After"] = str(int(value) if value == int(value) else value)
                body = {"status": fault.status, "error": "injected fault"}
                return JSONResponse(body, status_code=fault.status or 500, headers=headers)
            if fault.kind == "hang":
                record["outcome"] = "fault"
                # Until the fault's window ends (an hour for count-only hangs).
                end = fault.until if fault.until is not None else time.time() + 3600
                return await _hold(request, record, end)
            if fault.kind == "slow":
                await _pause(fault.delay or 0.0)
                if state.stopping.is_set():
                    record["outcome"] = "fault"
                    body = {"status": 503, "error": "fake API shutting down"}
                    return JSONResponse(body, status_code=503)
        if request.url.path == "/jokes/random" and (
            request.query_params.get("category") == STUCK_CATEGORY
        ):
            record["outcome"] = "error"
            return await _hold(request, record, time.time() + STUCK_FOR)
        response = _route(request, record)
        if fault is not None and fault.kind == "malformed" and response.status_code == 200:
            record["outcome"] = "fault"
            text = bytes(response.body)
            return Response(text[: max(1, len(text) // 2)], media_type="application/json")
        return response

    def _route(request: Request, record: dict[str, Any]) -> Response:
        path = request.url.path
        if path == "/jokes/categories":
            return JSONResponse(CATEGORIES)
        if path == "/jokes/random":
            category = request.query_params.get("category")
            if category == FAILING_CATEGORY:
                record["outcome"] = "error"
                body = {"status": 500, "error": "Internal Server Error", "path": path}
                return JSONResponse(body, status_code=500)
            if category is not None and category not in CATEGORIES:
                record["outcome"] = "not_found"
                return _not_found(path)
            index = state.rng.randrange(state.pool_size)
            joke = make_joke(state.seed, index, category)
            record["joke_id"] = joke["id"]
            return JSONResponse(joke)
        if path == "/jokes/search":
            query = request.query_params.get("query", "")
            if not 3 <= len(query) <= 120:
                record["outcome"] = "error"
                body = {"status": 400, "error": "search.query: size must be between 3 and 120"}
                return JSONResponse(body, status_code=400)
            # Search the first 1000 jokes of the pool (enough to be realistic, bounded in time).
            found = [
                make_joke(state.seed, i)
                for i in range(min(state.pool_size, 1000))
                if query.lower() in make_joke(state.seed, i)["value"].lower()
            ]
            return JSONResponse({"total": len(found), "result": found})
        record["outcome"] = "not_found"
        return _not_found(path)

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
            return JSONResponse({"faults": []})
        if request.method == "GET":
            now = time.time()
            return JSONResponse({"faults": [f.describe() for f in state.faults if f.active(now)]})
        try:
            fault = Fault.parse(state.next_fault_id, await read_json(request), time.time())
        except FaultError as exc:
            return _refused(exc)
        state.next_fault_id += 1
        state.faults.append(fault)
        return JSONResponse(fault.describe(), status_code=201)

    async def jokes(request: Request) -> Response:
        try:
            body = await read_json(request)
            if not isinstance(body, dict) or "pool_size" not in body:
                raise FaultError(f"send {{'pool_size': N}} with N from 1 to {MAX_POOL_SIZE:_}")
            pool_size = _integer(body["pool_size"], "pool_size", 1, MAX_POOL_SIZE)
        except FaultError as exc:
            return _refused(exc)
        state.pool_size = pool_size
        return JSONResponse({"pool_size": pool_size})

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    async def requests(request: Request) -> Response:
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return JSONResponse({"error": "since must be an integer index"}, status_code=400)
        return JSONResponse(state.requests[max(0, since) :])

    app = Starlette(
        routes=[
            Route("/_control/faults", faults, methods=["GET", "POST", "DELETE"]),
            Route("/_control/jokes", jokes, methods=["POST"]),
            Route("/_control/reset", reset, methods=["POST"]),
            Route("/_control/requests", requests, methods=["GET"]),
            Route("/{path:path}", serve, methods=["GET"]),
        ]
    )
    app.state.fake = state
    return app
