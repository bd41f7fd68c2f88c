"""The images the docker backend uses: names (overridable by environment) and build recipes.

Pure: nothing here talks to Docker. :mod:`harness.docker.build` turns the :class:`Recipe` of
the shared runtime rootfs into an image (debootstrap + chroot + ``docker import``) and each
:class:`Derived` image into a thin ``docker build`` on top of it. Fingerprints are stored in the
images (``ENV``) so a changed recipe is rebuilt and an unchanged one is skipped.
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
BUILDER_VERSION = 3
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


RUNTIME_IMAGE = "bulletproof/runtime:bookworm"


def runtime_recipe() -> Recipe:
    """One Debian rootfs for both images: PostgreSQL 15 and Python 3.11 with the fake API's
    libraries (host versions), plus the PostgreSQL entrypoint. Built once (one chroot, one
    ``docker import``); the images are thin layers of metadata over it."""
    return Recipe(
        key="runtime",
        image=RUNTIME_IMAGE,
        packages=("postgresql-15", "python3"),
        pip=pinned_requirements(FAKEAPI_DISTRIBUTIONS),
        pre_install={
            "/etc/postgresql-common/createcluster.conf": "create_main_cluster = false\n",
        },
        files={
            "/usr/local/bin/docker-entrypoint.sh": (ENTRYPOINT_SCRIPT.read_text(), 0o755),
        },
        env={"LANG": "C.UTF-8"},
        cmd=("bash",),
    )


@dataclass(frozen=True)
class Derived:
    """An image made by ``docker build`` from a Dockerfile and a few context files."""

    key: str
    image: str
    dockerfile: str
    context: Mapping[str, str] = field(default_factory=dict)
    """File name -> content (mode 0755) in the build context."""

    def fingerprint(self) -> str:
        """A short hash of the Dockerfile (its FROM names the parent) and the context."""
        blob = json.dumps([self.dockerfile, dict(sorted(self.context.items()))])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def full_dockerfile(self) -> str:
        """The Dockerfile plus the fingerprint and label instructions."""
        return (
            self.dockerfile.rstrip("\n")
            + f"\nENV {FINGERPRINT_ENV}={self.fingerprint()}\nLABEL {IMAGE_LABEL}={self.key}\n"
        )


def _from_runtime(*lines: str) -> str:
    return "\n".join(
        [f"FROM {RUNTIME_IMAGE}", f"# runtime {runtime_recipe().fingerprint()}", *lines, ""]
    )


def postgres_image(image: str = DEFAULT_POSTGRES_IMAGE) -> Derived:
    """PostgreSQL with an entrypoint honouring the official image's variables."""
    return Derived(
        key="postgres",
        image=image,
        dockerfile=_from_runtime(
            f"ENV PATH={POSTGRES_BIN}:{BASE_PATH} PGDATA=/var/lib/postgresql/data",
            'ENTRYPOINT ["docker-entrypoint.sh"]',
            'CMD ["postgres"]',
            "EXPOSE 5432",
            "STOPSIGNAL SIGINT",
        ),
    )


def python_image(image: str = DEFAULT_PYTHON_IMAGE) -> Derived:
    """Python 3.11 with starlette and uvicorn: runs ``python3 -m harness.fakeapi``."""
    return Derived(
        key="python",
        image=image,
        dockerfile=_from_runtime(
            "ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1",
            'CMD ["python3"]',
        ),
    )


EMBEDDED_TOXIPROXY_IMAGE = "bulletproof/toxiproxy-embedded:latest"
# Speaks the real image's command line (``-host=H -port=P -seed=N``) and runs the embedded
# Toxiproxy from the ``harness`` package the docker backend mounts at /opt/bulletproof.
EMBEDDED_TOXIPROXY_ENTRYPOINT = """#!/bin/sh
host=0.0.0.0
port=8474
seed=""
for arg in "$@"; do
    case "$arg" in
        -host=*) host="${arg#-host=}" ;;
        -port=*) port="${arg#-port=}" ;;
        -seed=*) seed="${arg#-seed=}" ;;
    esac
done
exec python3 -m harness.toxiproxy --host "$host" --port "$port" ${seed:+--seed "$seed"}
"""


def embedded_toxiproxy_image(python: str) -> Derived:
    """A Toxiproxy-compatible image on the ``python`` image, running the embedded Toxiproxy.

    Lets the docker backend's Toxiproxy-in-a-container path run where the real image is absent.
    """
    return Derived(
        key="toxiproxy-embedded",
        image=EMBEDDED_TOXIPROXY_IMAGE,
        dockerfile="\n".join(
            [
                f"FROM {python}",
                "COPY toxiproxy /toxiproxy",
                "ENV PYTHONPATH=/opt/bulletproof",
                "EXPOSE 8474",
                'ENTRYPOINT ["/toxiproxy"]',
                'CMD ["-host=0.0.0.0"]',
                "",
            ]
        ),
        context={"toxiproxy": EMBEDDED_TOXIPROXY_ENTRYPOINT},
    )


def derived_images(
    images: Images | None = None, *, toxiproxy_embedded: bool = False
) -> list[Derived]:
    """The images to build: those in use that carry a default name (and, when asked, the
    embedded Toxiproxy image on the Python image in use)."""
    images = images or Images.from_env()
    out = []
    if images.postgres == DEFAULT_POSTGRES_IMAGE:
        out.append(postgres_image())
    if images.python == DEFAULT_PYTHON_IMAGE:
        out.append(python_image())
    if toxiproxy_embedded:
        out.append(embedded_toxiproxy_image(images.python))
    return out
