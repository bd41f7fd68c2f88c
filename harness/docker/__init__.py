"""Docker support without a registry: image recipes (``images``), building them (``build``) and
the reachability check (``engine.unreachable_reason``).

``python -m harness.docker.build`` builds the PostgreSQL and Python images from a debootstrapped
Debian rootfs with ``docker import``. Installing and starting an engine is machine provisioning,
done by ``.ci/docker_engine.py`` outside this package.
"""
