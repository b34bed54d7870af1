"""``python -m conductor_perf.swarm``: see :mod:`conductor_perf.swarm.runner`."""

import sys

from .runner import main

sys.exit(main())
