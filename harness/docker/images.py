"""The images the docker backend uses: names (overridable by environment) and build recipes.

Pure: nothing here talks to Docker. :mod:`harness.docker.build` turns a :class:`Recipe` into an
image; the recipe's :meth:`Recipe.fingerprint` is stored in the image (``ENV``) so a changed
recipe is rebuilt and an unchanged one is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BUILDER_VERSION = 2
FINGERPRINT_ENV = "BULLETPROOF_RECIPE"
IMAGE_LABEL = "bulletproof.image"

POSTGRES_IMAGE_ENV = "BULLETPROOF_POSTGRES_IMAGE"
PYTHON_IMAGE_ENV = "BULLETPROOF_PYTHON_IMAGE"
TOXIPROXY_IMAGE_ENV = "BULLETPROOF_TOXIPROXY_IMAGE"
DEFAULT_POSTGRES_IMAGE = "bulletproof/postgres:15-bookworm"
DEFAULT_PYTHON_IMAGE = "bulletproof/python:3.11-bookworm"
DEFAULT_TOXIPROXY_IMAGE = "ghcr.io/shopify/toxiproxy:2.12.0"

POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ENTRYPOINT_SCRIPT = Path(__file__).with_name("postgres-entrypoint.sh")
# The fake joke API's needs (DESIGN: starlette + uvicorn + stdlib); versions come from the host.
FAKEAPI_DISTRIBUTIONS = ("starlette", "uvicorn")


@dataclass(frozen=True)
class Images:
    """The image names in use, after environment overrides."""

    postgres: str
    python: str
    toxiproxy: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Images:
        """Names from ``BULLETPROOF_{POSTGRES,PYTHON,TOXIPROXY}_IMAGE``, else the defaults."""
        env = os.environ if env is None else env
        return cls(
            postgres=env.get(POSTGRES_IMAGE_ENV) or DEFAULT_POSTGRES_IMAGE,
            python=env.get(PYTHON_IMAGE_ENV) or DEFAULT_PYTHON_IMAGE,
            toxiproxy=env.get(TOXIPROXY_IMAGE_ENV) or DEFAULT_TOXIPROXY_IMAGE,
        )


@dataclass(frozen=True)
class Recipe:
    """How to make one image from the debootstrapped base rootfs."""

    key: str
    image: str
    packages: tuple[str, ...]
    pip: tuple[str, ...] = ()
    files: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    """Path in the image -> (content, mode)."""
    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    expose: tuple[int, ...] = ()
    pre_install: Mapping[str, str] = field(default_factory=dict)
    """Files written before apt-get runs (e.g. to stop postgresql-common creating a cluster)."""

    def fingerprint(self) -> str:
        """A short hash of everything that shapes the image, the suite and the builder version."""
        blob = json.dumps(
            {
                "suite": SUITE,
                "builder": BUILDER_VERSION,
                "packages": self.packages,
                "pip": self.pip,
                "files": {k: list(v) for k, v in sorted(self.files.items())},
                "pre": dict(sorted(self.pre_install.items())),
                "env": dict(sorted(self.env.items())),
                "entrypoint": self.entrypoint,
                "cmd": self.cmd,
                "expose": self.expose,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def import_changes(self) -> list[str]:
        """The ``docker import --change`` instructions (Dockerfile syntax) for this recipe."""
        env = {"PATH": BASE_PATH, **self.env, FINGERPRINT_ENV: self.fingerprint()}
        changes = [f"ENV {name}={value}" for name, value in env.items()]
        if self.entrypoint:
            changes.append(f"ENTRYPOINT {json.dumps(list(self.entrypoint))}")
        if self.cmd:
            changes.append(f"CMD {json.dumps(list(self.cmd))}")
        changes.extend(f"EXPOSE {port}" for port in self.expose)
        changes.append(f"LABEL {IMAGE_LABEL}={self.key}")
        return changes


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(
    roots: Iterable[str],
    *,
    version: Callable[[str], str] = metadata.version,
    requires: Callable[[str], list[str] | None] = metadata.requires,
) -> tuple[str, ...]:
    """``name==version`` for ``roots`` and their (marker-matching, extra-free) dependencies.

    Versions are those installed on this machine, so the container runs what the host tests.
    """
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        key = _canonical(name)
        if key in seen:
            continue
        seen[key] = f"{key}=={version(name)}"
        for spec in requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    return tuple(sorted(seen.values()))


def postgres_recipe(image: str = DEFAULT_POSTGRES_IMAGE) -> Recipe:
    """PostgreSQL 15 from Debian with an entrypoint honouring the official image's variables."""
    return Recipe(
        key="postgres",
        image=image,
        packages=("postgresql-15",),
        pre_install={
            "/etc/postgresql-common/createcluster.conf": "create_main_cluster = false\n",
        },
        files={
            "/usr/local/bin/docker-entrypoint.sh": (ENTRYPOINT_SCRIPT.read_text(), 0o755),
        },
        env={
            "PATH": f"{POSTGRES_BIN}:{BASE_PATH}",
            "PGDATA": "/var/lib/postgresql/data",
            "LANG": "C.UTF-8",
        },
        entrypoint=("docker-entrypoint.sh",),
        cmd=("postgres",),
        expose=(5432,),
    )


def python_recipe(image: str = DEFAULT_PYTHON_IMAGE) -> Recipe:
    """Debian's Python 3.11 with the fake joke API's libraries at the host's versions."""
    return Recipe(
        key="python",
        image=image,
        packages=("python3",),
        pip=pinned_requirements(FAKEAPI_DISTRIBUTIONS),
        env={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"},
        cmd=("python3",),
    )


EMBEDDED_TOXIPROXY_IMAGE = "bulletproof/toxiproxy-embedded:latest"
# Speaks the real image's command line (``-host=H -port=P``) and runs the embedded Toxiproxy
# from the ``harness`` package the docker backend mounts at /opt/bulletproof.
EMBEDDED_TOXIPROXY_ENTRYPOINT = """#!/bin/sh
host=0.0.0.0
port=8474
for arg in "$@"; do
    case "$arg" in
        -host=*) host="${arg#-host=}" ;;
        -port=*) port="${arg#-port=}" ;;
    esac
done
exec python3 -m harness.toxiproxy --host "$host" --port "$port"
"""


def embedded_toxiproxy_dockerfile(python_image: str) -> str:
    """A Dockerfile for a Toxiproxy-compatible image on ``python_image``; its build context holds
    ``toxiproxy`` (:data:`EMBEDDED_TOXIPROXY_ENTRYPOINT`).

    Lets the docker backend's Toxiproxy-in-a-container path run where the real image is absent.
    """
    return "\n".join(
        [
            f"FROM {python_image}",
            "COPY toxiproxy /toxiproxy",
            "ENV PYTHONPATH=/opt/bulletproof",
            f"LABEL {IMAGE_LABEL}=toxiproxy-embedded",
            "EXPOSE 8474",
            'ENTRYPOINT ["/toxiproxy"]',
            'CMD ["-host=0.0.0.0"]',
            "",
        ]
    )


def recipes(images: Images | None = None) -> list[Recipe]:
    """The recipes for the images in use that carry a default (locally buildable) name."""
    images = images or Images.from_env()
    out = []
    if images.postgres == DEFAULT_POSTGRES_IMAGE:
        out.append(postgres_recipe())
    if images.python == DEFAULT_PYTHON_IMAGE:
        out.append(python_recipe())
    return out
