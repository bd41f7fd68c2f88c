"""Build the docker backend's images without a registry: debootstrap + chroot + ``docker import``.

``python -m harness.docker.build [--force] [--only postgres|python]``:

1. ``debootstrap --variant=minbase bookworm`` once into a cached tarball
   (``/var/cache/bulletproof``, environment ``BULLETPROOF_DOCKER_CACHE``);
2. per image: unpack the base, ``apt-get install`` the recipe's packages in a chroot (``/proc``
   mounted, a ``policy-rc.d`` so no service starts), ``pip install --target`` the pinned Python
   libraries from the host's package index, write the recipe's files;
3. ``tar | docker import --change ...`` under the image's name.

An image whose stored fingerprint matches its recipe is skipped, so a second run takes a second.
Images built in parallel; needs root (debootstrap, chroot, mount) and a reachable engine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.docker.engine import unreachable_reason
from harness.docker.images import (
    EMBEDDED_TOXIPROXY_ENTRYPOINT,
    EMBEDDED_TOXIPROXY_IMAGE,
    FINGERPRINT_ENV,
    IMAGE_LABEL,
    MIRROR,
    SUITE,
    Images,
    Recipe,
    embedded_toxiproxy_dockerfile,
    recipes,
)

PYTHON_SITE = "usr/local/lib/python3.11/dist-packages"
POLICY_RC_D = "#!/bin/sh\n# no service starts while building an image\nexit 101\n"


class BuildError(RuntimeError):
    """A build step failed; the message names the step and its log."""


def cache_dir() -> Path:
    """Where the debootstrapped base tarball is kept between runs."""
    return Path(os.environ.get("BULLETPROOF_DOCKER_CACHE", "/var/cache/bulletproof"))


def log(msg: str) -> None:
    """One progress line on stderr."""
    print(f"docker-build: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, logfile: Path, step: str, **kwargs: object) -> None:
    with logfile.open("ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-15:]
        raise BuildError(
            f"{step} failed (exit {done.returncode}); log {logfile}:\n" + "\n".join(tail)
        )


def base_tarball(cache: Path) -> Path:
    """The debootstrapped Debian minbase rootfs as a tarball, made once and cached."""
    tarball = cache / f"{SUITE}-minbase.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache, prefix="debootstrap-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        logfile = cache / "debootstrap.log"
        log(f"debootstrap --variant=minbase {SUITE} (log {logfile})")
        _run(
            ["debootstrap", "--variant=minbase", SUITE, str(rootfs), MIRROR],
            logfile=logfile,
            step="debootstrap",
        )
        for deb in (rootfs / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        partial = cache / f"{tarball.name}.partial"
        _run(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
            logfile=logfile,
            step="tar base rootfs",
        )
        partial.rename(tarball)
    log(f"base rootfs cached at {tarball} in {time.monotonic() - start:.1f}s")
    return tarball


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts") as f:
        points = [line.split()[1] for line in f]
    return [p for p in points if p.startswith(prefix)]


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
    proc_mounted = False
    try:
        _run(["tar", "-C", str(rootfs), "-xf", str(base)], logfile=logfile, step="unpack base")
        for path, content in recipe.pre_install.items():
            target = rootfs / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        policy = rootfs / "usr/sbin/policy-rc.d"
        policy.write_text(POLICY_RC_D)
        policy.chmod(0o755)
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        _run(["mount", "-t", "proc", "proc", str(rootfs / "proc")], logfile=logfile, step="mount")
        proc_mounted = True
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
        proc_mounted = False
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        policy.unlink()
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
        if proc_mounted:
            subprocess.run(["umount", "-l", str(rootfs / "proc")], check=False)
        leftover = _mounts_under(rootfs)
        if leftover:  # never delete through a mount point
            log(f"not removing {rootfs}: still mounted {leftover}")
        else:
            shutil.rmtree(rootfs, ignore_errors=True)
    return time.monotonic() - start


def build_embedded_toxiproxy(python_image: str, *, force: bool = False) -> float:
    """Build :data:`EMBEDDED_TOXIPROXY_IMAGE` (``docker build`` on the local Python image)."""
    import docker

    start = time.monotonic()
    client = docker.from_env()
    try:
        if not force:
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.get(EMBEDDED_TOXIPROXY_IMAGE)
                log(f"{EMBEDDED_TOXIPROXY_IMAGE} exists; skipping")
                return 0.0
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            for name, text in (
                ("Dockerfile", embedded_toxiproxy_dockerfile(python_image)),
                ("toxiproxy", EMBEDDED_TOXIPROXY_ENTRYPOINT),
            ):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o755
                tar.addfile(info, io.BytesIO(data))
        context.seek(0)
        try:
            client.images.build(
                fileobj=context, custom_context=True, tag=EMBEDDED_TOXIPROXY_IMAGE, rm=True
            )
        except docker.errors.BuildError as exc:
            raise BuildError(f"docker build of {EMBEDDED_TOXIPROXY_IMAGE} failed: {exc}") from None
    finally:
        client.close()
    elapsed = time.monotonic() - start
    log(f"built {EMBEDDED_TOXIPROXY_IMAGE} in {elapsed:.1f}s")
    return elapsed


def build(*, force: bool = False, only: str | None = None) -> dict[str, float]:
    """Build the missing or outdated images; return seconds per built image."""
    reason = unreachable_reason()
    if reason is not None:
        raise BuildError(reason)
    todo = [r for r in recipes() if only in (None, r.key)]
    stale = []
    for recipe in todo:
        have = image_fingerprint(recipe.image)
        if have is not None and have != recipe.fingerprint():
            log(f"{recipe.image} is outdated ({have}, recipe {recipe.fingerprint()}); rebuilding")
        if not force and have == recipe.fingerprint():
            log(f"{recipe.image} is up to date ({have}); skipping")
        else:
            stale.append(recipe)
    if not stale:
        return {}
    if os.geteuid() != 0:
        raise BuildError("building images needs root (debootstrap, chroot, mount); run as root")
    base = base_tarball(cache_dir())
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="build-") as tmp:
        workdir = Path(tmp)
        with ThreadPoolExecutor(max_workers=len(stale)) as pool:
            futures = {r.image: pool.submit(build_image, r, base, workdir) for r in stale}
            errors = []
            for image, future in futures.items():
                try:
                    timings[image] = future.result()
                    log(f"built {image} in {timings[image]:.1f}s")
                    _remove_dangling()
                except BuildError as exc:
                    errors.append(str(exc))
            if errors:
                raise BuildError("\n".join(errors))
    return timings


def main(argv: list[str] | None = None) -> int:
    """Command line; exit 1 with the failing step's log tail on error."""
    parser = argparse.ArgumentParser(prog="python -m harness.docker.build", description=__doc__)
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--only", choices=("postgres", "python"), help="build one image")
    parser.add_argument(
        "--toxiproxy-embedded",
        action="store_true",
        help=f"also build {EMBEDDED_TOXIPROXY_IMAGE} (the embedded Toxiproxy in a container)",
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        build(force=args.force, only=args.only)
        if args.toxiproxy_embedded:
            build_embedded_toxiproxy(Images.from_env().python, force=args.force)
    except BuildError as exc:
        print(f"docker-build: {exc}", file=sys.stderr)
        return 1
    log(f"done in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
