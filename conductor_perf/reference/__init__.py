"""The embedded reference conductor: conductor-loop 0.76's API and files, without its defects.

Run it with ``python -m conductor_perf.reference --root DIR --port 0`` (the first stdout line is
the URL). In Python: :func:`conductor_perf.reference.app.create_app`,
:func:`conductor_perf.reference.__main__.serve` and
:class:`conductor_perf.reference.testing.ServerThread`. See ``README.md`` in this folder for the
flags, the config keys, the stub agent's variables and where the reference differs from the real
server.
"""

from .config import STUB_DIR, ReferenceConfig, load_config

__all__ = ["STUB_DIR", "ReferenceConfig", "load_config"]
