"""`phi3ov bench --busy N`: the spinning loads run in sessions of their own while the block runs, and are gone after."""

from __future__ import annotations

import os
import time
from pathlib import Path

from phi3ov.bench.load import busy


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_each_load_spins_in_a_session_of_its_own_and_is_stopped_after_the_block():
    lines: list[str] = []
    with busy(2, log=lines.append) as pids:
        assert len(pids) == 2 and len(lines) == 1 and all(str(pid) in lines[0] for pid in pids)
        assert all(os.getsid(pid) == pid != os.getsid(0) for pid in pids)  # each leads a session, not ours
        deadline = time.monotonic() + 10
        while min(cpu_seconds(pid) for pid in pids) < 0.05 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert min(cpu_seconds(pid) for pid in pids) >= 0.05, "a load did not spin"
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # killed and reaped


def test_no_load_starts_nothing():
    lines: list[str] = []
    with busy(0, log=lines.append) as pids:
        assert pids == [] and lines == []
