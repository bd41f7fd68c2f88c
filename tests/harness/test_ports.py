"""Ports the harness hands its services lie where no outgoing connection can take them."""

from __future__ import annotations

import socket
from pathlib import Path

from harness.ports import PortPicker, candidate_ports, ephemeral_range, free_port


def test_ephemeral_range_reads_the_kernel_setting(tmp_path: Path) -> None:
    setting = tmp_path / "ip_local_port_range"
    setting.write_text("32768\t60999\n")
    assert ephemeral_range(setting) == (32768, 60999)


def test_an_unreadable_range_is_none(tmp_path: Path) -> None:
    assert ephemeral_range(tmp_path / "missing") is None
    (tmp_path / "bad").write_text("many\n")
    assert ephemeral_range(tmp_path / "bad") is None


def test_candidates_avoid_the_ephemeral_range() -> None:
    assert candidate_ports((32768, 60999)) == range(10_000, 32768)
    # A range starting low leaves the stretch above it.
    assert candidate_ports((10_000, 40_000)) == range(40_001, 65_536)
    # No room either side, or no range known: nothing to hand out (free_port binds 0 then).
    assert len(candidate_ports((1024, 65535))) == 0
    assert len(candidate_ports(None)) == 0


def test_free_port_is_outside_the_ephemeral_range_and_bindable() -> None:
    ephemeral = ephemeral_range()
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20, "a port was handed out twice"
    for port in ports:
        if ephemeral is not None and len(candidate_ports(ephemeral)) > 0:
            assert not ephemeral[0] <= port <= ephemeral[1], port
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_picker_skips_a_port_in_use() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        picker = PortPicker(range(taken, taken + 2), start=0)
        # taken + 1 belongs to whoever holds it: the picker may hand it out or find none.
        assert picker.pick("127.0.0.1") in (taken + 1, None)


def test_picker_gives_up_after_trying_each_port_once() -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        assert PortPicker(range(taken, taken + 1), start=0).pick("127.0.0.1") is None
