"""The image builder's pure parts: names, recipes, fingerprints, pins, import instructions."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from harness.docker import images
from harness.docker.images import (
    DEFAULT_POSTGRES_IMAGE,
    DEFAULT_PYTHON_IMAGE,
    DEFAULT_TOXIPROXY_IMAGE,
    EMBEDDED_TOXIPROXY_ENTRYPOINT,
    FINGERPRINT_ENV,
    RUNTIME_IMAGE,
    Images,
    Recipe,
    derived_images,
    embedded_toxiproxy_image,
    pinned_requirements,
    postgres_image,
    python_image,
    runtime_recipe,
)


def test_image_names_default_and_overrides() -> None:
    assert Images.from_env({}) == Images(
        DEFAULT_POSTGRES_IMAGE, DEFAULT_PYTHON_IMAGE, DEFAULT_TOXIPROXY_IMAGE
    )
    assert DEFAULT_TOXIPROXY_IMAGE == "ghcr.io/shopify/toxiproxy:2.12.0"
    env = {
        "BULLETPROOF_POSTGRES_IMAGE": "postgres:16",
        "BULLETPROOF_PYTHON_IMAGE": "mine/python:1",
        "BULLETPROOF_TOXIPROXY_IMAGE": "",  # empty means default
    }
    assert Images.from_env(env) == Images("postgres:16", "mine/python:1", DEFAULT_TOXIPROXY_IMAGE)


def test_only_images_with_default_names_are_built() -> None:
    keys = [d.key for d in derived_images(Images.from_env({}))]
    assert keys == ["postgres", "python"]
    overridden = Images.from_env({"BULLETPROOF_POSTGRES_IMAGE": "postgres:16"})
    assert [d.key for d in derived_images(overridden)] == ["python"]
    # The embedded Toxiproxy image builds on whichever Python image is in use, after it.
    mine = Images.from_env({"BULLETPROOF_PYTHON_IMAGE": "mine/python:1"})
    last = derived_images(mine, toxiproxy_embedded=True)[-1]
    assert last.key == "toxiproxy-embedded"
    assert last.dockerfile.splitlines()[0] == "FROM mine/python:1"


def test_derived_images_build_on_the_runtime_and_carry_their_fingerprint() -> None:
    pg, py = postgres_image(), python_image()
    for derived in (pg, py):
        lines = derived.full_dockerfile().splitlines()
        assert lines[0] == f"FROM {RUNTIME_IMAGE}"
        # The runtime's fingerprint is part of the Dockerfile: a new runtime rebuilds them.
        assert f"# runtime {runtime_recipe().fingerprint()}" in lines
        assert f"ENV {FINGERPRINT_ENV}={derived.fingerprint()}" in lines
        assert f"LABEL bulletproof.image={derived.key}" in lines
    assert pg.fingerprint() != py.fingerprint()
    assert 'ENTRYPOINT ["docker-entrypoint.sh"]' in pg.dockerfile
    assert "STOPSIGNAL SIGINT" in pg.dockerfile  # fast shutdown, as the official image
    assert "ENV PATH=/usr/lib/postgresql/15/bin:" in pg.dockerfile
    assert 'CMD ["python3"]' in py.dockerfile


def test_fingerprint_is_stable_and_follows_the_recipe() -> None:
    base = Recipe(key="k", image="i:1", packages=("a", "b"))
    assert base.fingerprint() == Recipe(key="k", image="i:1", packages=("a", "b")).fingerprint()
    assert len(base.fingerprint()) == 16
    changed = [
        Recipe(key="k", image="i:1", packages=("a", "c")),
        Recipe(key="k", image="i:1", packages=("a", "b"), pip=("x==1",)),
        Recipe(key="k", image="i:1", packages=("a", "b"), files={"/f": ("x", 0o644)}),
        Recipe(key="k", image="i:1", packages=("a", "b"), env={"A": "1"}),
        Recipe(key="k", image="i:1", packages=("a", "b"), cmd=("x",)),
    ]
    prints = {r.fingerprint() for r in changed}
    assert base.fingerprint() not in prints
    assert len(prints) == len(changed)


def test_import_changes_are_dockerfile_instructions() -> None:
    recipe = Recipe(
        key="x",
        image="x:1",
        packages=("a",),
        env={"PGDATA": "/data"},
        entrypoint=("docker-entrypoint.sh",),
        cmd=("postgres",),
        expose=(5432,),
    )
    changes = recipe.import_changes()
    assert f"ENV {FINGERPRINT_ENV}={recipe.fingerprint()}" in changes
    assert "ENV PGDATA=/data" in changes
    assert 'ENTRYPOINT ["docker-entrypoint.sh"]' in changes
    assert 'CMD ["postgres"]' in changes
    assert "EXPOSE 5432" in changes
    assert "LABEL bulletproof.image=x" in changes
    assert any(c.startswith("ENV PATH=/usr/local/sbin:") for c in changes)
    # docker import accepts only these instructions (STOPSIGNAL, for one, is refused).
    allowed = {"ENV", "ENTRYPOINT", "CMD", "EXPOSE", "LABEL", "USER", "WORKDIR", "VOLUME"}
    assert {c.split()[0] for c in changes} <= allowed
    # JSON-form ENTRYPOINT/CMD parse as JSON lists.
    for change in changes:
        if change.startswith(("ENTRYPOINT", "CMD")):
            assert isinstance(json.loads(change.split(" ", 1)[1]), list)


def test_runtime_ships_postgres_python_the_entrypoint_and_no_default_cluster() -> None:
    recipe = runtime_recipe()
    assert set(recipe.packages) == {"postgresql-15", "python3"}
    content, mode = recipe.files["/usr/local/bin/docker-entrypoint.sh"]
    assert content.startswith("#!/bin/sh")
    assert "POSTGRES_PASSWORD" in content and "POSTGRES_DB" in content
    assert mode & stat.S_IXUSR
    assert (
        "create_main_cluster = false"
        in recipe.pre_install["/etc/postgresql-common/createcluster.conf"]
    )


def test_entrypoint_script_is_valid_sh() -> None:
    done = subprocess.run(["sh", "-n", str(images.ENTRYPOINT_SCRIPT)], capture_output=True)
    assert done.returncode == 0, done.stderr


def test_pins_follow_dependencies_skipping_extras_and_foreign_markers() -> None:
    versions = {"Top": "1.0", "dep_one": "2.0", "Dep.Two": "3.0", "shared": "4.0"}
    requires = {
        "Top": ["dep-one>=1", 'Dep.Two ; python_version >= "3"', 'never ; extra == "docs"'],
        "dep-one": ["shared"],
        "Dep.Two": ["shared", 'winonly ; sys_platform == "win32"'],
        "shared": None,
    }

    def version(name: str) -> str:
        return next(v for k, v in versions.items() if k.lower().replace("_", "-") == name.lower())

    pins = pinned_requirements(["Top"], version=version, requires=lambda n: requires.get(n, []))
    assert pins == ("dep-one==2.0", "dep-two==3.0", "shared==4.0", "top==1.0")


def test_runtime_pins_the_fake_apis_libraries_at_host_versions() -> None:
    from importlib import metadata

    pins = dict(p.split("==") for p in runtime_recipe().pip)
    assert pins["starlette"] == metadata.version("starlette")
    assert pins["uvicorn"] == metadata.version("uvicorn")
    assert "h11" in pins  # a dependency of uvicorn, found transitively


def test_embedded_toxiproxy_dockerfile_and_flag_translation(tmp_path: Path) -> None:
    image = embedded_toxiproxy_image("base/python:1")
    assert image.dockerfile.splitlines()[0] == "FROM base/python:1"
    assert 'ENTRYPOINT ["/toxiproxy"]' in image.dockerfile
    assert image.context["toxiproxy"] == EMBEDDED_TOXIPROXY_ENTRYPOINT
    # The entrypoint speaks the real image's flags: run it with a python3 that echoes its argv.
    script = tmp_path / "toxiproxy"
    script.write_text(EMBEDDED_TOXIPROXY_ENTRYPOINT)
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    out = subprocess.run(
        ["sh", str(script), "-host=10.0.0.1", "-port=9999"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.split()
    assert out == ["-m", "harness.toxiproxy", "--host", "10.0.0.1", "--port", "9999"]
    defaults = subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    assert defaults[-4:] == ["--host", "0.0.0.0", "--port", "8474"]
