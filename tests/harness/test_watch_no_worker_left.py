"""``Watch.no_worker_left``: the waits stop only when no job can run any more."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from harness.history.store import HistoryWriter
from harness.nemesis import Nemesis
from harness.profiles import Profile
from harness.stack import Stack
from harness.watch import Watch


@dataclass
class _Worker:
    name: str
    running: bool
    exit_code: int | None = None

    def is_running(self) -> bool:
        return self.running


@dataclass
class _Nemesis:
    open_targets: set[str] = field(default_factory=set)

    def holds(self, target: str) -> bool:
        return target in self.open_targets


def _watch(workers: list[_Worker], open_targets: frozenset[str] = frozenset()) -> Watch:
    w = Watch()
    w.stack = cast(Stack, type("S", (), {"workers": workers})())
    w.nemesis = cast(Nemesis, _Nemesis(set(open_targets)))
    w.profile = cast(Profile, None)
    w.writer = cast(HistoryWriter, None)
    return w


def test_every_worker_exited_on_its_own_means_no_worker_left() -> None:
    watch = _watch([_Worker("w1", False, 1), _Worker("w2", False, 1)])
    assert watch.no_worker_left()


def test_one_live_worker_is_enough() -> None:
    assert not _watch([_Worker("w1", False, 1), _Worker("w2", True)]).no_worker_left()


def test_a_worker_down_inside_a_fault_window_may_come_back() -> None:
    # kill_worker / worker_down restart the worker before their window closes
    watch = _watch([_Worker("w1", False, -9)], frozenset({"worker:w1"}))
    assert not watch.no_worker_left()


def test_a_stack_without_workers_is_not_waiting_for_one_that_died() -> None:
    # a scenario may queue jobs before it starts any worker
    assert not _watch([]).no_worker_left()
