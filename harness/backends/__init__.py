"""Backends: where the harness's services run (``local`` processes or ``docker`` containers)."""

from __future__ import annotations

from harness.backends.base import Backend, BackendUnavailable

__all__ = ["Backend", "BackendUnavailable", "get_backend_class"]


def get_backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name`` (``local`` or ``docker``).

    Raises :class:`BackendUnavailable` with one line naming the choices for an unknown name.
    """
    if name == "local":
        from harness.backends.local import LocalBackend

        return LocalBackend
    if name == "docker":
        from harness.backends.docker import DockerBackend  # type: ignore[import-not-found,unused-ignore]

        return DockerBackend  # type: ignore[no-any-return,unused-ignore]
    raise BackendUnavailable(f"unknown backend {name!r}; choose one of local, docker")
