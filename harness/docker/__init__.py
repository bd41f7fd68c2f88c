"""Docker support without a registry: engine setup (``engine``) and image building (``build``).

``python -m harness.docker.engine up|down|status`` installs and starts a Docker engine when none
is reachable, and stops only the engine it started. ``python -m harness.docker.build`` builds the
PostgreSQL and Python images from a debootstrapped Debian rootfs with ``docker import``.
"""
