"""The exclusive ``flock`` with a deadline that both bus appends and run-info updates use.

conductor-loop polls non-blocking ``flock`` attempts every 10 ms until a timeout. Polling faster is
invisible to other lockers (it is the same kernel lock either way) and keeps contention from costing
10 ms per collision, so the pause starts at 50 us and doubles up to the real 10 ms.
"""

from __future__ import annotations

import errno
import fcntl
import time

POLL_MAX_S = 0.010
POLL_FIRST_S = 0.00005
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def flock_until(fd: int, deadline: float, *, max_pause: float = POLL_MAX_S) -> bool:
    """Take an exclusive flock on ``fd`` before ``deadline`` (``time.monotonic()``); False on timeout.

    Errors other than "lock busy" are raised as ``OSError``.
    """
    pause = min(POLL_FIRST_S, max_pause)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, max_pause)


def try_flock(fd: int) -> bool:
    """One non-blocking attempt at an exclusive flock; False when it is held elsewhere."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in _BUSY:
            return False
        raise
