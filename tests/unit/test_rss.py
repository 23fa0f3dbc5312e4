"""The peers' workers report their own peak memory, not their parent's."""

from __future__ import annotations

import subprocess
import sys

from phi3ov.bench.rss import peak_rss_mb

CHILD = "from phi3ov.bench.rss import peak_rss_mb; print(peak_rss_mb())"


def test_a_child_of_a_big_parent_reports_its_own_peak():
    ballast = bytearray(400 * 2**20)  # the parent's peak grows by 400 MB (as after building the phi3-mini shape)
    ballast[::4096] = b"x" * len(ballast[::4096])  # touched, so it is resident
    child = float(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
                                 check=True).stdout)
    assert peak_rss_mb() > 400
    assert child < 200  # ru_maxrss would have carried the parent's 400+ MB into the child
    del ballast
