"""`phi3ov bench --busy N`: N cores kept busy while a benchmark runs, the way another program would keep them.

Each load is a spinning Python process in a session of its own. Where the kernel shares CPU time out by session
(autogroup: /proc/sys/kernel/sched_autogroup_enabled), a load started in the benchmark's own session (`python3 -c
"while True: pass" & phi3ov bench ...`) shares the benchmark's part of the machine: the bare pipelines, in the
benchmark's process, then get more of the CPU than the server the benchmark launches (in a session of its own,
so its process group can be stopped), and the app's layers look slower than they are (docs/performance.md,
section 9: 30-40 ms of first token on the Phi-3-mini shape). With the load in a session of its own, every layer
competes with it alike.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SPIN = "while True: pass"


@contextmanager
def busy(cores: int, log: Callable[[str], None] = lambda _line: None) -> Iterator[list[int]]:
    """`cores` spinning processes for the length of the block, each in a session of its own; their PIDs."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(cores):
            procs.append(subprocess.Popen([sys.executable, "-c", SPIN], start_new_session=True,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))
        if procs:
            log(f"{cores} core(s) kept busy by spinning processes (PIDs {', '.join(str(p.pid) for p in procs)}), "
                "each in a session of its own")
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait(timeout=10)


def note(cores: int | None) -> str:
    """What a table's title says of the load: ", N core(s) busy (--busy)", or nothing."""
    return f", {cores} core(s) busy (--busy)" if cores else ""
