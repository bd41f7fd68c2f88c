"""The harness side, under the ``bulletproof`` name: describe your app, run the scenarios.

    # mypkg/chaos.py
    from bulletproof.chaos import FAKE_API, Target

    target = Target(name="mypkg", app="mypkg.tasks:app", task="fetch", worker=[...])

    $ python -m bulletproof.chaos mypkg.chaos:target       # the seven generic scenarios

Same objects as :mod:`harness.target` (imported from there: one owner); only this module of
``bulletproof`` imports the harness and its test dependencies.
"""

from harness.target.spec import FAKE_API, SCENARIOS, Target, TargetError, load_target

__all__ = ["FAKE_API", "SCENARIOS", "Target", "TargetError", "load_target"]


if __name__ == "__main__":
    import sys

    from harness.target.__main__ import main

    raise SystemExit(main(sys.argv[1:]))
