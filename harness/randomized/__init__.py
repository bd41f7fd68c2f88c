"""Random, overlapping fault schedules over a real workload, shrunk when they break something.

Jepsen's split: :mod:`.schedule` (the schedule as data), :mod:`.generator` (random schedules
from the run's seed), :mod:`.executor` (client workload + nemesis timeline on a real stack),
:mod:`.checks` (the verdicts over the history) and :mod:`.shrink` (the smallest failing
schedule). Entry point: ``scenarios/test_random.py`` (``--random N``, ``--schedule FILE``).
"""
