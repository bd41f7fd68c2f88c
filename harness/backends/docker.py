"""The docker backend: PostgreSQL, the fake joke API and Toxiproxy in containers.

- PostgreSQL: testcontainers' ``PostgresContainer`` on ``BULLETPROOF_POSTGRES_IMAGE`` (default
  the locally built ``bulletproof/postgres:15-bookworm``, see :mod:`harness.docker.build`).
- The fake joke API: ``python3 -m harness.fakeapi`` in ``BULLETPROOF_PYTHON_IMAGE`` with this
  checkout's ``harness`` package mounted read-only.
- Toxiproxy: in a container when ``BULLETPROOF_TOXIPROXY_IMAGE`` (default
  ``ghcr.io/shopify/toxiproxy:2.12.0``) is present locally (never pulled), its proxies listening
  on published ports and reaching their upstreams by network alias; otherwise the embedded
  Toxiproxy runs on the host in front of the containers' published ports.
- The system under test runs on the host as managed subprocesses, exactly as in the local
  backend (the SUT reaches the proxies' published ports on 127.0.0.1).

Every container and the network carry the labels ``bulletproof.run`` (the run id of
:mod:`harness.cleanup`) and ``bulletproof.owner`` (pid and start time of the owning process), so
:meth:`DockerBackend.open` removes what a killed run left behind (:func:`reap_leftovers`), and
:meth:`DockerBackend.close` plus the run's reaper (:func:`remove_run`, registered with
:mod:`harness.cleanup` by ``open``, never on import) remove what this one made, also after a
failed test or Ctrl-C. Published ports are bound to 127.0.0.1 with a fixed host port, so a
restarted container keeps its address. ``open`` disables testcontainers' Ryuk reaper (it needs a
registry); the labels do its job. Importing this module changes nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from psycopg import sql

import harness
from harness import cleanup, http
from harness.backends.base import (
    Address,
    Backend,
    BackendUnavailable,
    Endpoint,
    PostgresService,
    Service,
    ServiceError,
    SystemRole,
    ToxiproxyService,
)
from harness.backends.local import LocalBackend, LocalToxiproxy
from harness.cleanup import owner_alive, owner_identity
from harness.docker.engine import unreachable_reason
from harness.docker.images import Images
from harness.ports import free_port
from harness.wait import WaitTimeout, wait_for

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container
    from toxiproxy import Toxiproxy
    from toxiproxy.proxy import Proxy

LABEL_RUN = "bulletproof.run"
LABEL_OWNER = "bulletproof.owner"
LABEL_HOST = "bulletproof.host"
"""The owner's machine: owners are only judged (by pid) on the machine they ran on."""
LABEL_BACKEND = "bulletproof.backend"
PG_USER = "postgres"
PG_PASSWORD = "bulletproof"  # a throwaway container on 127.0.0.1; not a secret
PG_PORT = 5432
FAKEAPI_PORT = 8080
TOXIPROXY_API_PORT = 8474
TOXIPROXY_PROXY_PORTS = tuple(range(21000, 21008))
"""Container ports published up front for proxies (ports cannot be added to a running one)."""
MOUNT_ROOT = "/opt/bulletproof"
REPO_ROOT = Path(harness.__file__).resolve().parent.parent
HARNESS_MOUNT = {"bind": f"{MOUNT_ROOT}/harness", "mode": "ro"}


# --- ownership and leftovers -----------------------------------------------------------------


def _client() -> docker.DockerClient:
    import docker

    return docker.from_env(timeout=30)


def _remove_labelled(client: docker.DockerClient, keep: Callable[[dict[str, str]], bool]) -> int:
    """Remove bulletproof containers, then networks, whose labels ``keep`` rejects."""
    import docker

    removed = 0
    for container in client.containers.list(all=True, filters={"label": LABEL_RUN}):
        if not keep(container.labels):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True, v=True)
                removed += 1
    for network in client.networks.list(filters={"label": LABEL_RUN}):
        if not keep(network.attrs.get("Labels") or {}):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                network.remove()
                removed += 1
    return removed


def _owner_lives_or_is_elsewhere(labels: dict[str, str]) -> bool:
    if labels.get(LABEL_HOST, socket.gethostname()) != socket.gethostname():
        return True  # another machine's run on a shared engine: not ours to judge
    return owner_alive(labels.get(LABEL_OWNER, ""))


def reap_leftovers(client: docker.DockerClient | None = None) -> int:
    """Remove containers and networks of runs whose owning process is gone; return the count."""
    own = client or _client()
    try:
        return _remove_labelled(own, _owner_lives_or_is_elsewhere)
    finally:
        if client is None:
            own.close()


def remove_run(run_id: str) -> None:
    """Remove every container and network of run ``run_id`` (a :mod:`harness.cleanup` reaper)."""
    if unreachable_reason() is not None:
        return
    client = _client()
    try:
        _remove_labelled(client, lambda labels: labels.get(LABEL_RUN) != run_id)
    finally:
        client.close()


def _port_taken(exc: Exception) -> bool:
    text = str(exc)
    return "port is already allocated" in text or "address already in use" in text


# --- containers as services --------------------------------------------------------------------


class ContainerService(Service):
    """A container as a :class:`Service`: first start creates it, later starts reuse it.

    The container's output is appended to ``log_path`` by a follower thread per start. Its port
    ``container_port`` is published on 127.0.0.1 and looked up again after every start.
    """

    def __init__(
        self,
        name: str,
        *,
        create: Callable[[], Container],
        log_path: Path,
        container_port: int | None,
        alias: str | None,
        ready: Callable[[ContainerService], bool] | None = None,
        stop_signal: str = "SIGTERM",
    ) -> None:
        """``create`` makes and starts the container; ``alias=None``: peers use the host port."""
        self.name = name
        self._create = create
        self._log_path = log_path
        self.container_port = container_port
        self.alias = alias
        self._ready = ready
        self.stop_signal = stop_signal
        self.container: Container | None = None
        self._outside: Address | None = None
        self._follower: threading.Thread | None = None
        self.starts = 0

    # -- Service -------------------------------------------------------------------------

    @property
    def endpoint(self) -> Endpoint | None:
        if self._outside is None or self.container_port is None:
            return None
        if self.alias is None:
            return Endpoint(self._outside, self._outside)
        return Endpoint(self._outside, Address(self.alias, self.container_port))

    @property
    def log_path(self) -> Path:
        return self._log_path

    def start(self, *, timeout: float = 60.0) -> float:
        """Create (first time) or start the container, look its port up, wait until ready.

        Already running: only waits until ready (as the local services do).
        """
        began = time.monotonic()
        if self.is_running():
            self._lookup_port()
            self._wait_ready(timeout=timeout)
            return time.monotonic() - began
        since = time.time()
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._log_path.open("a") as log:
            log.write(f"--- harness: start #{self.starts + 1} of container {self.name}\n")
        if self.container is None:
            self.container = self._create()
        else:
            self.container.start()
        self.starts += 1
        self._follow(since)
        self._lookup_port()
        self._wait_ready(timeout=max(1.0, timeout - (time.monotonic() - began)))
        return time.monotonic() - began

    def _lookup_port(self) -> None:
        if self.container_port is None or self.container is None:
            return
        key = f"{self.container_port}/tcp"

        def published() -> int | None:
            assert self.container is not None
            self.container.reload()
            bindings = (self.container.attrs["NetworkSettings"].get("Ports") or {}).get(key)
            return int(bindings[0]["HostPort"]) if bindings else None

        port = wait_for(published, timeout=10, what=f"{self.name}'s published port", interval=0.05)
        self._outside = Address("127.0.0.1", port.value)

    def _wait_ready(self, *, timeout: float) -> None:
        def ready() -> bool:
            if not self.is_running():
                raise _Exited()
            return True if self._ready is None else self._ready(self)

        try:
            wait_for(ready, timeout=timeout, what=f"{self.name} to be ready", interval=0.05)
        except _Exited:
            raise ServiceError(
                f"{self.name}: container exited with {self.exit_code} before it was ready; "
                f"log {self._log_path}: {self.tail()}"
            ) from None
        except WaitTimeout:
            raise ServiceError(
                f"{self.name}: not ready after {timeout:.1f}s; log {self._log_path}: {self.tail()}"
            ) from None

    def _follow(self, since: float) -> None:
        container = self.container
        assert container is not None
        path = self._log_path

        def copy() -> None:
            with contextlib.suppress(Exception), path.open("ab") as log:
                for chunk in container.logs(stream=True, follow=True, since=since):
                    log.write(chunk)
                    log.flush()

        self._follower = threading.Thread(target=copy, name=f"logs-{self.name}", daemon=True)
        self._follower.start()

    def output(self) -> str:
        """The container's output since its latest start."""
        if self.container is None:
            return ""
        started = self.container.attrs["State"].get("StartedAt")
        text: bytes = self.container.logs(since=_parse_docker_time(started)) if started else b""
        return text.decode(errors="replace")

    def tail(self, lines: int = 5) -> str:
        """The last lines of the container's output, joined with `` | ``."""
        try:
            text = (
                self.container.logs(tail=lines).decode(errors="replace") if self.container else ""
            )
        except Exception:
            text = ""
        return " | ".join(text.strip().splitlines()) or "(empty)"

    def terminate(self) -> None:
        """Send the stop signal (SIGTERM, SIGINT for PostgreSQL); return at once."""
        if self.is_running():
            with contextlib.suppress(Exception):
                assert self.container is not None
                self.container.kill(signal=self.stop_signal)

    def kill(self) -> None:
        """SIGKILL the container's main process; return once the container has stopped."""
        if not self.is_running():
            return
        assert self.container is not None
        with contextlib.suppress(Exception):
            self.container.kill(signal="SIGKILL")
        self.wait_exit(timeout=30)

    def is_running(self) -> bool:
        if self.container is None:
            return False
        import docker

        try:
            self.container.reload()
        except docker.errors.NotFound:
            return False
        return bool(self.container.attrs["State"]["Running"])

    def wait_exit(self, *, timeout: float) -> int:
        """Wait until the container has stopped; return its exit code."""
        if self.container is None:
            raise ServiceError(f"{self.name}: never started")
        wait_for(lambda: not self.is_running(), timeout=timeout, what=f"{self.name} to exit")
        if self._follower is not None:
            self._follower.join(timeout=2)
        return int(self.container.attrs["State"]["ExitCode"])

    @property
    def exit_code(self) -> int | None:
        if self.container is None or self.is_running():
            return None
        return int(self.container.attrs["State"]["ExitCode"])

    def close(self) -> None:
        """Remove the container (force). Idempotent."""
        if self.container is not None:
            import docker

            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                self.container.remove(force=True, v=True)
            if self._follower is not None:
                self._follower.join(timeout=2)
            self.container = None

    def __repr__(self) -> str:
        return f"<ContainerService {self.name} {self.endpoint}>"


class _Exited(Exception):
    """The container stopped while we waited for it to be ready."""


def _parse_docker_time(text: str) -> float:
    """Docker's RFC 3339 time with nanoseconds -> epoch seconds."""
    from datetime import datetime

    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z", text)
    if match is None:
        return 0.0
    whole = datetime.fromisoformat(match.group(1) + "+00:00").timestamp()
    return whole + float(f"0.{match.group(2) or 0}")


class DockerPostgres(ContainerService, PostgresService):
    """PostgreSQL in a testcontainers ``PostgresContainer``; databases created over TCP."""

    def dsn(self, dbname: str, *, inside: bool = False) -> str:
        """The published 127.0.0.1 address either way: the SUT's processes (the users of
        ``inside=True``) run on the host here. Only Toxiproxy, when it runs in a container,
        reaches PostgreSQL by alias, through ``endpoint.inside``."""
        endpoint = self.endpoint
        if endpoint is None:
            raise ServiceError("postgres: not started")
        address = endpoint.outside
        return f"postgresql://{PG_USER}:{PG_PASSWORD}@{address.host}:{address.port}/{dbname}"

    def _admin(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=5)

    def create_database(self, name: str, *, template: str | None = None) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(create)

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def server_version(self) -> str:
        with self._admin() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else ""


def _postgres_ready(service: ContainerService) -> bool:
    assert isinstance(service, DockerPostgres)
    try:
        with psycopg.connect(service.dsn("postgres"), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _fakeapi_ready(service: ContainerService) -> bool:
    if "fakeapi: listening on" not in service.output():
        return False
    endpoint = service.endpoint
    assert endpoint is not None
    try:
        response = http.get(f"http://{endpoint.outside}/jokes/categories", timeout=1.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _toxiproxy_ready(service: ContainerService) -> bool:
    endpoint = service.endpoint
    assert endpoint is not None
    try:
        response = http.get(f"http://{endpoint.outside}/version", timeout=1.0)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


class ContainerToxiproxy(ToxiproxyService):
    """Toxiproxy in a container: proxies listen on pre-published ports, upstreams by alias."""

    def __init__(self, service: ContainerService, proxy_ports: Mapping[int, int]) -> None:
        """``proxy_ports``: container port -> host port, published when the container started."""
        self.service = service
        self._free = dict(proxy_ports)

    @property
    def api_url(self) -> str:
        endpoint = self.service.endpoint
        assert endpoint is not None
        return f"http://{endpoint.outside}"

    @property
    def flavour(self) -> str:
        return "container"

    def client(self) -> Toxiproxy:
        from toxiproxy.server import Toxiproxy

        endpoint = self.service.endpoint
        assert endpoint is not None
        server = Toxiproxy()
        server.update_api_consumer(endpoint.outside.host, endpoint.outside.port)
        return server

    def create_proxy(self, name: str, upstream: Endpoint) -> tuple[Proxy, Endpoint]:
        if not self._free:
            raise ServiceError(
                f"toxiproxy: no published port left for proxy {name!r} "
                f"(at most {len(TOXIPROXY_PROXY_PORTS)} per stack)"
            )
        container_port, host_port = self._free.popitem()
        proxy = self.client().create(
            upstream=str(upstream.inside), name=name, listen=f"0.0.0.0:{container_port}"
        )
        return proxy, Endpoint.same("127.0.0.1", host_port)

    def close(self) -> None:
        self.service.close()


# --- the backend -------------------------------------------------------------------------------


class DockerBackend(Backend):
    """Containers for PostgreSQL, the fake joke API and (when its image is here) Toxiproxy."""

    name = "docker"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.images = Images.from_env()
        self.id = secrets.token_hex(4)
        self._client: docker.DockerClient | None = None
        self._network: Any = None  # testcontainers Network
        self._postgres: DockerPostgres | None = None
        self._services: list[Service] = []
        self._toxiproxies: list[ToxiproxyService] = []
        self.toxiproxy_in_container = False
        self._counter = itertools.count(1)
        # The SUT runs on the host; the local backend knows how (it starts nothing by itself).
        self._local = LocalBackend(workdir)

    @classmethod
    def check_available(cls) -> None:
        reason = unreachable_reason()
        if reason is not None:
            raise BackendUnavailable(reason)

    # -- helpers ---------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            raise BackendUnavailable("docker backend: not open")
        return self._client

    def labels(self) -> dict[str, str]:
        """Labels of everything this backend creates."""
        return {
            LABEL_RUN: cleanup.current_run().id,
            LABEL_OWNER: owner_identity(),
            LABEL_HOST: socket.gethostname(),
            LABEL_BACKEND: self.id,
        }

    def _unique(self, stem: str) -> str:
        return f"bp-{self.id}-{stem}-{next(self._counter)}"

    def image_present(self, image: str) -> bool:
        """Whether ``image`` is in the local image store (never pulls)."""
        import docker

        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def _require_image(self, image: str, variable: str) -> None:
        if not self.image_present(image):
            raise BackendUnavailable(
                f"docker backend: image {image} is not present locally; build it with "
                f"`python -m harness.docker.build` or set {variable} to a local image"
            )

    def _run_container(self, *, image: str, name: str, alias: str, ports: dict[str, int],
                       **kwargs: Any) -> Container:  # fmt: skip
        """``containers.run`` on the backend's network with ``alias``, retrying taken ports."""
        from docker.types import EndpointConfig

        network = self._network.name
        for attempt in range(3):
            bindings = {port: ("127.0.0.1", host) for port, host in ports.items()}
            try:
                return self.client.containers.run(
                    image,
                    name=name,
                    detach=True,
                    labels=self.labels(),
                    network=network,
                    networking_config={
                        network: EndpointConfig(self.client.api.api_version, aliases=[alias])
                    },
                    ports=bindings,
                    **kwargs,
                )
            except Exception as exc:
                if not _port_taken(exc) or attempt == 2:
                    raise
                with contextlib.suppress(Exception):
                    self.client.containers.get(name).remove(force=True)
                ports = {port: free_port() for port in ports}
        raise AssertionError("unreachable")

    # -- Backend ---------------------------------------------------------------------------

    def open(self) -> None:
        """Reap leftovers, create the network, start PostgreSQL (images must be present).

        First registers :func:`remove_run` with :mod:`harness.cleanup`, so what this run creates
        is also removed at exit when :meth:`close` is never reached.
        """
        self.check_available()
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.network import Network

        testcontainers_config.ryuk_disabled = True  # Ryuk needs a registry; the labels do its job
        cleanup.register_reaper(remove_run)
        self._client = _client()
        reaped = reap_leftovers(self._client)
        if reaped:
            print(f"docker backend: removed {reaped} leftovers of killed runs", file=sys.stderr)
        self._require_image(self.images.postgres, "BULLETPROOF_POSTGRES_IMAGE")
        self._require_image(self.images.python, "BULLETPROOF_PYTHON_IMAGE")
        self.toxiproxy_in_container = self.image_present(self.images.toxiproxy)
        self._network = Network(docker_network_kw={"labels": self.labels()})
        self._network.name = f"bp-{self.id}"
        self._network.create()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._postgres = self._make_postgres()
        self._postgres.start(timeout=90)

    def _make_postgres(self) -> DockerPostgres:
        from testcontainers.community.postgres import PostgresContainer

        name = f"bp-{self.id}-postgres"
        host_port = free_port()
        alias = "postgres" if self.toxiproxy_in_container else None

        def create() -> Container:
            tc = (
                PostgresContainer(
                    self.images.postgres,
                    username=PG_USER,
                    password=PG_PASSWORD,
                    dbname="postgres",
                    driver=None,
                )
                .with_name(name)
                .with_network(self._network)
                .with_network_aliases("postgres")
                .with_kwargs(labels=self.labels(), stop_signal="SIGINT")
            )
            # with_bind_ports cannot bind to 127.0.0.1 only; docker-py takes (host_ip, port).
            tc.ports = {f"{PG_PORT}/tcp": ("127.0.0.1", host_port)}  # type: ignore[dict-item]
            tc.start()
            return tc.get_wrapped_container()

        return DockerPostgres(
            "postgres",
            create=create,
            log_path=self.workdir / "postgres.log",
            container_port=PG_PORT,
            alias=alias,
            ready=_postgres_ready,
            stop_signal="SIGINT",  # fast shutdown, as the official image's STOPSIGNAL
        )

    def close(self) -> None:
        """Remove every container and the network this backend made. Idempotent."""
        for proxy in reversed(self._toxiproxies):
            with contextlib.suppress(Exception):
                proxy.close()
        for service in reversed(self._services):
            with contextlib.suppress(Exception):
                service.close()
        self._toxiproxies.clear()
        self._services.clear()
        if self._postgres is not None:
            with contextlib.suppress(Exception):
                self._postgres.close()
            self._postgres = None
        if self._client is not None:
            mine = self.id
            with contextlib.suppress(Exception):
                _remove_labelled(self._client, lambda labels: labels.get(LABEL_BACKEND) != mine)
            self._client.close()
            self._client = None
        self._network = None

    @property
    def postgres(self) -> PostgresService:
        if self._postgres is None:
            raise BackendUnavailable("docker backend: not open")
        return self._postgres

    def start_toxiproxy(self, *, seed: int, log_path: Path) -> ToxiproxyService:
        if not self.toxiproxy_in_container:
            proxy = self._host_toxiproxy(seed=seed, log_path=log_path)
        else:
            proxy = self._container_toxiproxy(seed=seed)
        self._toxiproxies.append(proxy)
        return proxy

    def _host_toxiproxy(self, *, seed: int, log_path: Path) -> ToxiproxyService:
        """The documented fallback: Toxiproxy on the host (as the local backend picks it),
        its upstreams the containers' published ports (their ``inside`` equals ``outside``)."""
        from harness.toxiproxy.selection import start_toxiproxy

        return LocalToxiproxy(start_toxiproxy(seed=seed, log_path=log_path))

    def _container_toxiproxy(self, *, seed: int) -> ContainerToxiproxy:
        name = self._unique("toxiproxy")
        ports = {f"{TOXIPROXY_API_PORT}/tcp": free_port()}
        ports.update({f"{p}/tcp": free_port() for p in TOXIPROXY_PROXY_PORTS})

        def create() -> Container:
            return self._run_container(
                image=self.images.toxiproxy,
                name=name,
                alias=name,
                ports=ports,
                command=["-host=0.0.0.0", f"-port={TOXIPROXY_API_PORT}", f"-seed={seed}"],
                # Unused by the real image; lets an image running the embedded Toxiproxy
                # (``python -m harness.docker.build --toxiproxy-embedded``) import it.
                environment={"PYTHONPATH": MOUNT_ROOT},
                volumes={str(REPO_ROOT / "harness"): HARNESS_MOUNT},
            )

        service = ContainerService(
            name,
            create=create,
            log_path=self.workdir / f"{name}.log",
            container_port=TOXIPROXY_API_PORT,
            alias=name,
            ready=_toxiproxy_ready,
        )
        service.start(timeout=30)
        assert service.container is not None
        published = service.container.attrs["NetworkSettings"]["Ports"]
        proxy_ports = {p: int(published[f"{p}/tcp"][0]["HostPort"]) for p in TOXIPROXY_PROXY_PORTS}
        return ContainerToxiproxy(service, proxy_ports)

    def start_fakeapi(self, *, seed: int, log_path: Path, timeout: float = 30.0) -> Service:
        name = self._unique("fakeapi")
        alias = name if self.toxiproxy_in_container else None
        host_port = free_port()

        command = ["python3", "-m", "harness.fakeapi", "--host", "0.0.0.0"]
        command += ["--port", str(FAKEAPI_PORT), "--seed", str(seed)]

        def create() -> Container:
            return self._run_container(
                image=self.images.python,
                name=name,
                alias=name,
                ports={f"{FAKEAPI_PORT}/tcp": host_port},
                command=command,
                entrypoint=[],
                environment={"PYTHONPATH": MOUNT_ROOT},
                volumes={str(REPO_ROOT / "harness"): HARNESS_MOUNT},
            )

        service = ContainerService(
            "fakeapi",
            create=create,
            log_path=log_path,
            container_port=FAKEAPI_PORT,
            alias=alias,
            ready=_fakeapi_ready,
        )
        self._services.append(service)
        service.start(timeout=timeout)
        return service

    def run_migrate(self, *, env: Mapping[str, str], log_path: Path, timeout: float = 60.0) -> None:
        """The SUT runs on the host: exactly as the local backend runs it."""
        self._local.run_migrate(env=env, log_path=log_path, timeout=timeout)

    def system_service(
        self, role: SystemRole, *, name: str, env: Mapping[str, str], log_path: Path
    ) -> Service:
        """A host process as in the local backend; closed with the backend if still running."""
        service = self._local.system_service(role, name=name, env=env, log_path=log_path)
        self._services.append(service)
        return service
