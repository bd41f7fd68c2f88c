"""Generic scenarios against a user's own Procrastinate app (see :mod:`harness.target.spec`)."""

from harness.target.spec import FAKE_API, Target, TargetError, load_target

__all__ = ["FAKE_API", "Target", "TargetError", "load_target"]
