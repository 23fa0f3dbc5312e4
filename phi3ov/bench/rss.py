"""A process's own peak memory, for the peers' workers (no phi3ov imports: llama.cpp's worker runs as a script)."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's own peak RSS: VmHWM, not ru_maxrss, which keeps the parent's figure across fork and exec."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
