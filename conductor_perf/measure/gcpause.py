"""Keep the load generator's own garbage collector out of a measured window.

A collection of the client's heap (in the Robot Framework process, which also holds its result
model) pauses the client's event loop; a response that arrives meanwhile is stamped late and the
pause is reported as server latency. So the client collects before the window and pauses the
collector during it, as pytest-benchmark's ``--benchmark-disable-gc`` does. It was not seen to
change the 100-task burst here; it removes one source of client-side error. Only bounded windows
use it, and the collector's state is restored after.
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
