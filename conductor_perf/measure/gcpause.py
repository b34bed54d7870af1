"""Keep the load generator's own garbage collector out of a measured window.

A full collection of a big client heap (the Robot Framework process holds its whole result
model) stalls the client's event loop for tens of milliseconds; every response that arrives
meanwhile is stamped late and the stall is reported as server latency. Load generators therefore
collect before the window and pause the collector during it (pytest-benchmark's
``--benchmark-disable-gc``). Only bounded windows use this: the collector's state is restored after.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Collect now, then keep the cyclic collector off until the block ends (state restored)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
