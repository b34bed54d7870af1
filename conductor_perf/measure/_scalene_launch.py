"""Start scalene in *this* process, so the profiled program keeps the launcher's pid.

``python -m scalene run ...`` normally re-executes itself once as a child process with the
environment its native library needs (``SCALENE_ALLOCATION_SAMPLING_WINDOW``, and
``LD_PRELOAD=libscalene.so`` in memory mode), then waits for that child. The profiled program then
runs in a *grandchild* of whoever started it, and a signal sent to the started pid alone kills or
stops the waiting parent and orphans the profiled program, which keeps running without writing its
profile (see :mod:`conductor_perf.measure.profile`).

This launcher asks scalene itself which environment it wants (its own argument parser and
``ScalenePreload.get_preload_environ``), puts it in ``os.environ`` and ``exec``s
``python -m scalene <args>``: scalene finds its environment already set and does not re-execute, so
the started pid *is* the profiled program. If scalene's internals ever move, the environment step is
skipped and scalene falls back to its own re-execution (still correct; just two processes).

Usage: ``python _scalene_launch.py run -o out.json [--cpu-only] (prog.py | -m pkg.mod) --- args``.
"""

from __future__ import annotations

import os
import sys


def preload_environment(scalene_argv: list[str]) -> dict[str, str]:
    """Return the environment variables scalene would set before re-executing itself.

    Args:
        scalene_argv: the arguments after ``scalene`` (starting with ``run``).

    Returns:
        The variables, or an empty dict when scalene's internals are not where expected.
    """
    saved = sys.argv
    try:
        from scalene.scalene_parseargs import ScaleneParseArgs
        from scalene.scalene_preload import ScalenePreload

        sys.argv = ["scalene", *scalene_argv]
        args, _left = ScaleneParseArgs.parse_args()
        return dict(ScalenePreload.get_preload_environ(args))
    except (Exception, SystemExit):
        return {}
    finally:
        sys.argv = saved


def main(argv: list[str]) -> None:
    """Set scalene's environment and replace this process with ``python -m scalene <argv>``."""
    os.environ.update(preload_environment(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "scalene", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
