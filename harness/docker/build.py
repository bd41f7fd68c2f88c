"""Build the docker backend's images without a registry: debootstrap + chroot + ``docker import``.

``python -m harness.docker.build [--force] [--toxiproxy-embedded] [--base-only]``:

1. ``debootstrap --variant=minbase bookworm`` once into a cached tarball
   (``/var/cache/bulletproof``, environment ``BULLETPROOF_DOCKER_CACHE``);
2. the runtime rootfs: unpack the base, ``apt-get install postgresql-15 python3`` in a chroot
   (``/proc`` mounted, a ``policy-rc.d`` so no service starts, dpkg without fsync),
   ``pip install --target`` the fake API's libraries at the host's versions, add the PostgreSQL
   entrypoint; ``tar | docker import`` as ``bulletproof/runtime:bookworm``;
3. the images proper, ``docker build`` of metadata only on top of it (a second each):
   ``bulletproof/postgres:15-bookworm``, ``bulletproof/python:3.11-bookworm`` and, with
   ``--toxiproxy-embedded``, ``bulletproof/toxiproxy-embedded:latest``.

Images whose stored fingerprint matches their recipe are skipped, so a second run takes a
second. Needs root (debootstrap, chroot, mount) and a reachable engine (except ``--base-only``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.docker.engine import unreachable_reason
from harness.docker.images import (
    EMBEDDED_TOXIPROXY_IMAGE,
    FINGERPRINT_ENV,
    IMAGE_LABEL,
    MIRROR,
    SUITE,
    Derived,
    Recipe,
    derived_images,
    embedded_toxiproxy_image,
    runtime_recipe,
)
from harness.wait import WaitTimeout, wait_for

PYTHON_SITE = "usr/local/lib/python3.11/dist-packages"
# dpkg without fsync while building a throwaway rootfs (several times faster on a busy disk).
UNSAFE_IO = "etc/dpkg/dpkg.cfg.d/bulletproof-unsafe-io"
POLICY_RC_D = "#!/bin/sh\n# no service starts while building an image\nexit 101\n"


class BuildError(RuntimeError):
    """A build step failed; the message names the step and its log."""


def cache_dir() -> Path:
    """Where the debootstrapped base tarball is kept between runs."""
    return Path(os.environ.get("BULLETPROOF_DOCKER_CACHE", "/var/cache/bulletproof"))


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"docker-build: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, logfile: Path, step: str, **kwargs: Any) -> None:
    """Run one build step, output to ``logfile``; on interruption kill its whole process group
    (debootstrap and dpkg leave children that would keep writing into the rootfs)."""
    with logfile.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
        try:
            code = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            _wait_group_gone(proc.pid)
            raise
    if code != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-15:]
        raise BuildError(f"{step} failed (exit {code}); log {logfile}:\n" + "\n".join(tail))


def _wait_group_gone(pgid: int) -> None:
    def gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        os.killpg(pgid, signal.SIGKILL)
        return False

    with contextlib.suppress(WaitTimeout):
        wait_for(gone, timeout=10, what=f"process group {pgid} to exit", interval=0.05)


def base_tarball(cache: Path) -> Path:
    """The debootstrapped Debian minbase rootfs as a tarball, made once and cached."""
    tarball = cache / f"{SUITE}-minbase.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix="debootstrap-"))
    try:
        rootfs = tmp / "rootfs"
        (rootfs / UNSAFE_IO).parent.mkdir(parents=True)
        (rootfs / UNSAFE_IO).write_text("force-unsafe-io\n")  # read by dpkg inside debootstrap
        logfile = cache / "debootstrap.log"
        log(f"debootstrap --variant=minbase {SUITE} (log {logfile})")
        _run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), MIRROR],
            logfile=logfile,
            step="debootstrap",
        )
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        (rootfs / UNSAFE_IO).unlink(missing_ok=True)
        partial = cache / f"{tarball.name}.partial"
        _run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            logfile=logfile,
            step="tar base rootfs",
        )
        partial.rename(tarball)
    finally:
        _remove_tree(tmp)
    log(f"base rootfs cached at {tarball} in {time.monotonic() - start:.1f}s")
    return tarball


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p.startswith(prefix)]


def _remove_tree(path: Path) -> None:
    """Unmount whatever is mounted below ``path`` (deepest first), then delete it.

    A build interrupted mid-way may leave /proc or debootstrap's /dev binds mounted there;
    nothing is deleted while a mount remains.
    """
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    leftover = _mounts_under(path)
    if leftover:
        log(f"not removing {path}: still mounted {leftover}")
    else:
        shutil.rmtree(path, ignore_errors=True)


def image_fingerprint(image: str) -> str | None:
    """The recipe fingerprint stored in a local image, or None when the image is absent."""
    import docker

    client = docker.from_env()
    try:
        env = client.images.get(image).attrs["Config"].get("Env") or []
    except docker.errors.ImageNotFound:
        return None
    finally:
        client.close()
    prefix = f"{FINGERPRINT_ENV}="
    return next((e[len(prefix) :] for e in env if e.startswith(prefix)), "")


def _remove_dangling() -> None:
    """Remove untagged images left when a rebuilt image took over its name (best effort)."""
    import docker

    client = docker.from_env()
    try:
        client.images.prune(filters={"dangling": True, "label": IMAGE_LABEL})
    except docker.errors.APIError:
        pass
    finally:
        client.close()


def build_image(recipe: Recipe, base: Path, workdir: Path) -> float:
    """Build ``recipe`` from the ``base`` tarball and import it; return the seconds taken."""
    start = time.monotonic()
    logfile = cache_dir() / "logs" / f"{recipe.key}.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.write_text("")
    rootfs = workdir / f"{recipe.key}-rootfs"
    rootfs.mkdir()
    try:
        _run(["tar", "-C", str(rootfs), "-xf", str(base)], logfile=logfile, step="unpack base")
        for path, content in recipe.pre_install.items():
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        unsafe_io = rootfs / UNSAFE_IO
        unsafe_io.write_text("force-unsafe-io\n")
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        _run(["mount", "-t", "proc", "proc", str(rootfs / "proc")], logfile=logfile, step="mount")
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        chroot = ["chroot", str(rootfs)]
        _run([*chroot, "apt-get", "update", "-q"], logfile=logfile, step="apt-get update", env=env)
        _run(
            [
                *chroot,
                "apt-get",
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                *recipe.packages,
            ],
            logfile=logfile,
            step=f"apt-get install {' '.join(recipe.packages)}",
            env=env,
        )
        _run([*chroot, "apt-get", "clean"], logfile=logfile, step="apt-get clean", env=env)
        _run(["umount", str(rootfs / "proc")], logfile=logfile, step="umount")
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        policy.unlink()
        unsafe_io.unlink()
        if recipe.pip:
            _run(
                [
                    sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile",
                    "--only-binary=:all:", "--target", str(rootfs / PYTHON_SITE), *recipe.pip,
                ],
                logfile=logfile,
                step=f"pip install {' '.join(recipe.pip)}",
            )  # fmt: skip
        for path, (content, mode) in recipe.files.items():
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            target.chmod(mode)
        changes = [arg for change in recipe.import_changes() for arg in ("--change", change)]
        with logfile.open("ab") as out:
            tar = subprocess.Popen(
                ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                stdout=subprocess.PIPE,
                stderr=out,
            )
            done = subprocess.run(
                ["docker", "import", *changes, "-", recipe.image],
                stdin=tar.stdout,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
            assert tar.stdout is not None
            tar.stdout.close()
            if tar.wait() != 0 or done.returncode != 0:
                raise BuildError(f"docker import of {recipe.image} failed; log {logfile}")
    finally:
        _remove_tree(rootfs)
    return time.monotonic() - start


def build_derived(derived: Derived, *, force: bool = False) -> float | None:
    """``docker build`` a :class:`Derived` image unless up to date; seconds taken or None."""
    import docker

    have = image_fingerprint(derived.image)
    if not force and have == derived.fingerprint():
        log(f"{derived.image} is up to date ({have}); skipping")
        return None
    start = time.monotonic()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in {"Dockerfile": derived.full_dockerfile(), **derived.context}.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    client = docker.from_env()
    try:
        client.images.build(fileobj=context, custom_context=True, tag=derived.image, rm=True)
    except docker.errors.BuildError as exc:
        raise BuildError(f"docker build of {derived.image} failed: {exc}") from None
    finally:
        client.close()
    elapsed = time.monotonic() - start
    log(f"built {derived.image} in {elapsed:.1f}s")
    return elapsed


def build_embedded_toxiproxy(python_image: str, *, force: bool = False) -> float | None:
    """Build :data:`EMBEDDED_TOXIPROXY_IMAGE` on ``python_image`` unless up to date."""
    return build_derived(embedded_toxiproxy_image(python_image), force=force)


def build(*, force: bool = False, toxiproxy_embedded: bool = False) -> dict[str, float]:
    """Build the missing or outdated images; return seconds per built image."""
    reason = unreachable_reason()
    if reason is not None:
        raise BuildError(reason)
    wanted = derived_images(toxiproxy_embedded=toxiproxy_embedded)
    stale = [d for d in wanted if force or image_fingerprint(d.image) != d.fingerprint()]
    timings: dict[str, float] = {}
    if not stale:
        log(f"{', '.join(d.image for d in wanted) or 'no image'}: up to date")
        return timings
    runtime = runtime_recipe()
    have = image_fingerprint(runtime.image)
    if force or have != runtime.fingerprint():
        if have is not None:
            log(f"{runtime.image} is outdated ({have}, recipe {runtime.fingerprint()})")
        if os.geteuid() != 0:
            raise BuildError("building images needs root (debootstrap, chroot, mount); run as root")
        base = base_tarball(cache_dir())
        with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="build-") as tmp:
            timings[runtime.image] = build_image(runtime, base, Path(tmp))
        log(f"built {runtime.image} in {timings[runtime.image]:.1f}s")
    for derived in wanted:  # in order: the embedded Toxiproxy builds on the Python image
        took = build_derived(derived, force=force)
        if took is not None:
            timings[derived.image] = took
    _remove_dangling()
    return timings


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 1 with the failing step's log tail on error."""
    parser = argparse.ArgumentParser(prog="python -m harness.docker.build", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument(
        "--toxiproxy-embedded",
        action="store_true",
        help=f"also build {EMBEDDED_TOXIPROXY_IMAGE} (the embedded Toxiproxy in a container)",
    )
    parser.add_argument(
        "--base-only",
        action="store_true",
        help="only debootstrap the cached base rootfs (needs no Docker engine)",
    )
    args = parser.parse_args(argv)
    # SIGTERM (e.g. from .ci/docker-smoke's exit trap) unwinds like Ctrl-C: the running step's
    # child is killed and the temp rootfs is unmounted and removed.
    signal.signal(signal.SIGTERM, _terminate)
    start = time.monotonic()
    try:
        if args.base_only:
            base_tarball(cache_dir())
        else:
            build(force=args.force, toxiproxy_embedded=args.toxiproxy_embedded)
    except BuildError as exc:
        print(f"docker-build: {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
