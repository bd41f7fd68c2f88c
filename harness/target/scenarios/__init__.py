"""Generic scenarios: run against any :class:`harness.target.Target` with ``--target``."""
