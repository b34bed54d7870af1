"""JSON bytes the way Go's ``encoding/json`` writes them (the real server's answers are Go-encoded).

Go's encoder escapes ``<``, ``>``, ``&``, U+2028 and U+2029 (``\\u003c``...), keeps other non-ASCII
characters as-is, writes no spaces, and ``json.Encoder.Encode`` (used by every API handler) ends the
document with ``\\n``. Times are RFC3339Nano strings with trailing zeros trimmed, which is what
:func:`conductor_perf.formats.bus.format_rfc3339nano` produces.
"""

from __future__ import annotations

import json
from typing import Any

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
_encode = _encoder.encode

_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _escape(text: str) -> str:
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        for raw, esc in _HTML.items():
            text = text.replace(raw, esc)
    return text


def marshal(value: Any) -> str:
    """``json.Marshal`` text (no trailing newline); dict order is kept, so build dicts in Go field order."""
    return _escape(_encode(value))


def encode(value: Any) -> bytes:
    """``json.NewEncoder(w).Encode(value)`` bytes: :func:`marshal` plus ``\\n``."""
    return (_escape(_encode(value)) + "\n").encode("utf-8", "replace")
