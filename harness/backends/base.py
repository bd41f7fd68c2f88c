"""The backend interface: what a place that runs the harness's services must provide.

A backend (``local`` processes or ``docker`` containers) is opened once per test session and
builds the services of one :class:`harness.stack.Stack` at a time. The stack itself is generic:
it puts Toxiproxy in front of PostgreSQL and the fake joke API, points the system under test
(SUT) at the proxies, and gives scenarios start/stop/kill/restart on every service.

Addresses have two views (:class:`Endpoint`): ``outside`` is how the harness (this Python
process) reaches a service; ``inside`` is how the other services of the same backend reach it
(the SUT's URLs, Toxiproxy's upstreams). For the local backend both are the same address.

Lifecycle::

    backend = LocalBackend(workdir)      # workdir: a temp dir the backend may fill and must empty
    backend.open()                       # session start: e.g. initdb + start PostgreSQL
    ...  build stacks: backend.postgres, start_toxiproxy(), start_fakeapi(), system_service()
    backend.close()                      # stops everything it started, idempotent
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from toxiproxy.proxy import Proxy
    from toxiproxy.server import Toxiproxy

SystemRole = Literal["api", "worker"]
"""The long-running SUT processes: ``python -m system api --no-worker`` and ``... worker``."""


# Templates made on each server (weak: a server closed and collected takes its entry along).
_TEMPLATES: weakref.WeakKeyDictionary[PostgresService, set[str]] = weakref.WeakKeyDictionary()
_TEMPLATES_LOCK = threading.Lock()


class BackendUnavailable(RuntimeError):
    """The backend cannot run here; the message is one line: what is missing, what to do."""


class ServiceError(RuntimeError):
    """A service did not start, become ready or stop as asked (one line, with a log path)."""


@dataclass(frozen=True)
class Address:
    """A TCP host and port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Endpoint:
    """Where a service is reached from the harness (``outside``) and from its peers (``inside``)."""

    outside: Address
    inside: Address

    @classmethod
    def same(cls, host: str, port: int) -> Endpoint:
        """An endpoint reached at one address from everywhere (the local backend)."""
        address = Address(host, port)
        return cls(address, address)


class Service(ABC):
    """A service with an address that can be started, stopped gracefully, killed and restarted.

    ``start`` returns once the service is ready (log line, HTTP probe or query) and reports the
    seconds that took. ``kill`` and ``stop`` return only once the service is really gone.
    Implementations: :class:`harness.processes.ManagedProcess` (local), containers (docker).
    """

    name: str

    @property
    @abstractmethod
    def endpoint(self) -> Endpoint | None:
        """The service's address (``None`` for services that listen on nothing, e.g. workers)."""

    @property
    @abstractmethod
    def log_path(self) -> Path | None:
        """A file with the service's output (stdout and stderr), kept after it stops."""

    @abstractmethod
    def start(self, *, timeout: float = 30.0) -> float:
        """Start (or start again) and wait until ready; return the seconds taken."""

    @abstractmethod
    def terminate(self) -> None:
        """Ask the service to stop (SIGTERM, ``docker stop`` without waiting); return at once."""

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL the service (a crash) and return once it is gone."""

    @abstractmethod
    def is_running(self) -> bool:
        """Whether the service's process/container is alive (not whether it is ready)."""

    @abstractmethod
    def wait_exit(self, *, timeout: float) -> int:
        """Wait until the service has exited and return its exit code (raise on timeout)."""

    @property
    @abstractmethod
    def exit_code(self) -> int | None:
        """The last exit code, ``None`` while running or never started."""

    @abstractmethod
    def close(self) -> None:
        """Release the service for good (kill if running, remove resources). Idempotent."""

    def stop(self, *, timeout: float = 10.0) -> int | None:
        """Graceful stop: :meth:`terminate`, wait up to ``timeout``, then :meth:`kill`.

        Returns the exit code (``None`` when it had to be killed or was not running).
        """
        if not self.is_running():
            return self.exit_code
        self.terminate()
        try:
            return self.wait_exit(timeout=timeout)
        except TimeoutError:
            self.kill()
            return None

    def restart(self, *, kill: bool = False, timeout: float = 30.0) -> float:
        """Stop (gracefully, or SIGKILL when ``kill``) and start again; return seconds to ready."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout=timeout)


def template_name(key: str) -> str:
    """The template database :meth:`PostgresService.create_migrated_database` keeps for ``key``."""
    return "bp_template_" + hashlib.sha256(key.encode()).hexdigest()[:16]


class PostgresService(Service):
    """The session's PostgreSQL server: one database per stack, same data across restarts."""

    @abstractmethod
    def create_database(self, name: str, *, template: str | None = None) -> None:
        """Create database ``name`` (dropping an old one of that name first): empty, or a copy
        of database ``template``."""

    def create_migrated_database(
        self, name: str, *, key: str, migrate: Callable[[str], None]
    ) -> bool:
        """Create ``name`` as a copy of a template database that ``migrate(template)`` set up
        once per ``key`` on this server (the key names everything the schema depends on);
        returns whether the template was made now.

        A copy is a file copy inside PostgreSQL; a migrate process per stack cost about one
        CPU second in every scenario (its imports), taken from the processes being timed. The
        template is dropped again if ``migrate`` fails, and goes with the server.
        """
        template = template_name(key)
        with _TEMPLATES_LOCK:
            made = _TEMPLATES.setdefault(self, set())
            if template in made:
                try:
                    self.create_database(name, template=template)
                    return False
                except Exception:  # the template is gone (dropped by hand): made again below
                    made.discard(template)
            self.create_database(template)
            try:
                migrate(template)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.drop_database(template)
                raise
            made.add(template)
            self.create_database(name, template=template)
        return True

    @abstractmethod
    def drop_database(self, name: str) -> None:
        """Drop database ``name``, disconnecting its sessions."""

    @abstractmethod
    def dsn(self, dbname: str, *, inside: bool = False) -> str:
        """A libpq URL for ``dbname`` from the harness, or from the backend's peers (``inside``)."""

    @abstractmethod
    def server_version(self) -> str:
        """``SHOW server_version`` of the running server."""


class ToxiproxyService(ABC):
    """A running Toxiproxy (real or embedded) that can put proxies between services.

    ``create_proxy(name, upstream)`` returns a toxiproxy-python ``Proxy`` and the proxy's listen
    endpoint; the SUT connects to ``endpoint.inside``. toxiproxy-python keeps its server address
    in class attributes, so only one Toxiproxy is driven per process at a time: :meth:`client`
    points it at this one.
    """

    @property
    @abstractmethod
    def api_url(self) -> str:
        """The HTTP API's base URL from the harness, e.g. ``http://127.0.0.1:8474``."""

    @property
    @abstractmethod
    def flavour(self) -> str:
        """Which Toxiproxy this is (e.g. ``embedded``, ``binary``, ``container``), for reports."""

    @abstractmethod
    def client(self) -> Toxiproxy:
        """A toxiproxy-python client pointed at this server."""

    @abstractmethod
    def create_proxy(self, name: str, upstream: Endpoint) -> tuple[Proxy, Endpoint]:
        """Create proxy ``name`` to ``upstream``; return it and where it listens."""

    @abstractmethod
    def close(self) -> None:
        """Stop the server and free its ports. Idempotent."""


class Backend(ABC):
    """A place to run the harness's services. See the module docstring for the lifecycle."""

    name: ClassVar[str]

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    @classmethod
    @abstractmethod
    def check_available(cls) -> None:
        """Raise :class:`BackendUnavailable` (one line: what is missing, how to get it)."""

    @abstractmethod
    def open(self) -> None:
        """Session start: prepare what all stacks share (PostgreSQL server, network, images)."""

    @abstractmethod
    def close(self) -> None:
        """Stop and remove everything the backend started. Idempotent, safe after a failed open."""

    @property
    @abstractmethod
    def postgres(self) -> PostgresService:
        """The session's PostgreSQL server (valid after :meth:`open`)."""

    @abstractmethod
    def start_toxiproxy(self, *, seed: int, log_path: Path) -> ToxiproxyService:
        """Start a Toxiproxy for one stack (ready on return).

        ``seed`` drives its random draws (toxicity, jitter) where the server takes one;
        ``log_path`` receives its log where the backend can redirect it.
        """

    @abstractmethod
    def start_fakeapi(self, *, seed: int, log_path: Path, timeout: float = 30.0) -> Service:
        """Start ``python -m harness.fakeapi --seed SEED`` (ready on return, endpoint set)."""

    @abstractmethod
    def run_migrate(self, *, env: Mapping[str, str], log_path: Path, timeout: float = 60.0) -> None:
        """Run ``python -m system migrate`` with ``env`` to the end (ServiceError if it fails)."""

    @abstractmethod
    def system_service(
        self, role: SystemRole, *, name: str, env: Mapping[str, str], log_path: Path
    ) -> Service:
        """A SUT process (not started yet) with ``env`` as its whole configuration.

        ``env`` already holds the URLs as the SUT sees them (through the proxies' ``inside``
        endpoints). For ``api`` the backend chooses the port; ``endpoint`` gives it after start.
        Workers are ready once they log ``bulletproof: worker ready name=<name>``; the API once
        ``GET /health`` answers (200 or 503).
        """

    def __enter__(self) -> Backend:
        try:
            self.open()
        except BaseException:
            with contextlib.suppress(Exception):
                self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
