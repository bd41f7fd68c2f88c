"""The system under test: a bulletproof Procrastinate worker, its tasks and its HTTP API.

Run it with ``python -m system migrate|worker|api`` (see ``system/README.md``).
"""
