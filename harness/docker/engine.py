"""Whether a Docker engine answers: the one question the harness asks about the engine.

Only a ping; nothing here installs, starts or changes anything. Provisioning a machine
(apt-get, starting and stopping dockerd, undoing its iptables changes) is done by the
script ``.ci/docker_engine.py``, outside the package.
"""

from __future__ import annotations

PROVISION = "python3 .ci/docker_engine.py up"
"""The command that installs and starts an engine on a Debian machine (as root)."""


def unreachable_reason() -> str | None:
    """None when a Docker engine answers a ping, else one line saying why and what to do."""
    try:
        import docker
    except ImportError:
        return "the 'docker' Python package is missing: pip install docker"
    try:
        client = docker.from_env(timeout=5)
    except docker.errors.DockerException as exc:
        return (
            f"no Docker engine is reachable ({_first_line(exc)}); start one with "
            f"`{PROVISION}` (installs docker.io when missing) or set DOCKER_HOST"
        )
    try:
        client.ping()
    except Exception as exc:  # any failure to answer means "not reachable"
        return f"the Docker engine does not answer a ping ({_first_line(exc)})"
    finally:
        client.close()
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
