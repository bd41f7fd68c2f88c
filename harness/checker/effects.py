"""No duplicate effects: at most one ``chuck_norris_jokes`` row per joke id.

The bug it exists to catch: a plain INSERT (no primary key, no upsert) where at-least-once
delivery re-runs a job or two submissions fetch the same joke: the effect is written twice.
"""

from __future__ import annotations

from collections import Counter

from harness.checker.runs import acknowledged_ids
from harness.checker.verdict import FAIL, PASS, Verdict
from harness.history.records import History
from harness.vocabulary import ApiOutcome, Invariant, JobStatus

NAME = Invariant.NO_DUPLICATE_EFFECTS
#: The fake API's path that serves a joke to store.
JOKE_PATH = "/jokes/random"


def joke_fetches(history: History) -> Counter[str]:
    """Joke id -> how many times the fake API served it (a joke fetched n times was written
    n times: n - 1 repeated writes, allowed with an upsert)."""
    return Counter(
        r.joke_id
        for r in history.api_requests
        if r.outcome == ApiOutcome.OK and r.joke_id is not None and r.path.startswith(JOKE_PATH)
    )


def duplicate_rows(history: History) -> dict[str, int]:
    """Joke id -> rows, for jokes stored more than once."""
    rows = Counter(e.joke_id for e in history.effects)
    return {k: n for k, n in sorted(rows.items()) if n > 1}


def check_no_duplicate_effects(history: History) -> Verdict:
    """Fail when a joke id has more than one row, or jobs succeeded but no row exists.

    Figures also count fetches of the same joke (successful fake-API responses per joke id):
    executions that wrote the same effect again, allowed and reported.
    """
    rows = Counter(e.joke_id for e in history.effects)
    fetches = joke_fetches(history)
    duplicates = duplicate_rows(history)
    jobs = history.jobs
    succeeded = sum(
        1 for j in acknowledged_ids(history) if j in jobs and jobs[j].status == JobStatus.SUCCEEDED
    )
    figures = {
        "rows": sum(rows.values()),
        "distinct_jokes": len(rows),
        "duplicate_rows": sum(n - 1 for n in duplicates.values()),
        "succeeded_jobs": succeeded,
        "fetches": sum(fetches.values()),
        "repeated_fetches": sum(n - 1 for n in fetches.values() if n > 1),
    }
    if duplicates:
        evidence = [f"joke {k} stored {n} times" for k, n in duplicates.items()]
        return Verdict(
            NAME,
            FAIL,
            f"{figures['duplicate_rows']} duplicate rows over {len(duplicates)} jokes",
            figures,
            evidence,
        )
    if succeeded and not rows:
        return Verdict(
            NAME, FAIL, f"{succeeded} jobs succeeded but no joke was stored", figures, []
        )
    return Verdict(
        NAME,
        PASS,
        f"{figures['rows']} rows, one per joke; {figures['repeated_fetches']} repeated fetches "
        "of an already stored joke",
        figures,
        [],
    )
