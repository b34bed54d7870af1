"""What creating a file system entry costs right now, next to a runs root.

Every figure that creates files (run creation, task submission) depends on the state of the file
system, not only on the code: on ext4 without a journal the kernel skips, one by one, every inode
freed in the last minutes when it allocates a new one, so a directory creation that costs ~10 us
on a quiet disk costs 50-100 us beside recently deleted files (measured on this 2-core machine). The
probe times ``count`` directory creations in a new folder and reports them, so a report can tell a
slower disk from slower code. The folders are left in place: deleting them would free inodes, the
very thing that slows the next measurement.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

PROBE_PREFIX = ".fs-probe-"


def directory_creation_cost(directory: str | os.PathLike[str], *, count: int = 64) -> dict[str, float]:
    """Time ``count`` ``mkdir`` calls in a new folder under ``directory``; microseconds.

    Returns ``count``, ``p50_us``, ``mean_us`` and ``max_us``. Raises ``OSError`` when the folder
    cannot be created.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    base = Path(directory) / f"{PROBE_PREFIX}{os.getpid()}-{time.time_ns()}"
    base.mkdir(parents=True)
    costs = []
    clock = time.perf_counter_ns
    for i in range(count):
        path = os.path.join(base, str(i))
        t0 = clock()
        os.mkdir(path)
        costs.append((clock() - t0) / 1000)
    return {"count": count, "p50_us": statistics.median(costs), "mean_us": statistics.fmean(costs),
            "max_us": max(costs)}  # fmt: skip
