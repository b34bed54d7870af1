"""The small subset of YAML that conductor-loop writes, emitted and read the way yaml.v3 does.

conductor-loop serializes message headers and ``run-info.yaml`` with Go's yaml.v3. Both files are
flat mappings of scalars (plus a few nested lists/maps in bus headers), so this module emits them by
hand for exact bytes and speed, and reads them with a fast line parser that falls back to PyYAML's
``BaseLoader`` (everything stays a string) for anything nested or unusual.

Scalar style rules of yaml.v3 (encode.go ``stringv`` + libyaml's emitter):

* a string that would resolve to another type when written plain (``""``, ``null``, ``true``,
  ``123``, ``1.5``, ``2026-01-01``...) is written double-quoted;
* a string containing a newline is written as a literal block (``|-`` / ``|``);
* a string plain YAML cannot carry (leading indicator, ``": "``, ``" #"``, leading/trailing space)
  is written single-quoted;
* everything else is plain.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable

import yaml

try:  # libyaml is much faster; PyYAML wheels ship it
    _BaseLoader = yaml.CBaseLoader
except AttributeError:  # pragma: no cover - pure-python PyYAML
    _BaseLoader = yaml.BaseLoader

INDENT = "    "  # yaml.v3 default: 4 spaces

# YAML 1.1/1.2 resolvers that yaml.v3 applies to plain scalars (resolve.go).
_NON_STRING = re.compile(
    r"""^(?:
        ~|null|Null|NULL
      | true|True|TRUE|false|False|FALSE
      | y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF
      | [-+]?(?:0|[1-9][0-9_]*)
      | [-+]?0b[01_]+ | [-+]?0o?[0-7_]+ | [-+]?0x[0-9a-fA-F_]+
      | [-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?
      | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
      | [0-9]+(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
      | [0-9]{4}-[0-9]{1,2}-[0-9]{1,2}
        (?:(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?
        (?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::?[0-9]{2})?))?)?
    )$""",
    re.VERBOSE,
)
_INDICATORS_START = set("-?:,[]{}#&*!|>'\"%@`")
_FLOW_OR_SPECIAL = set(",[]{}")


def _plain_allowed(s: str) -> bool:
    """Whether libyaml's emitter accepts ``s`` as a plain block scalar."""
    if not s or s[0] in " \t" or s[-1] in " \t":
        return False
    first = s[0]
    if first in _INDICATORS_START:
        # "-", "?" and ":" may start a plain scalar when followed by a non-space character
        if first in "-?:" and len(s) > 1 and s[1] not in " \t":
            pass
        else:
            return False
    if ": " in s or " #" in s or s.endswith(":") or "\t" in s:
        return False
    if s.startswith("---") or s.startswith("..."):
        return False
    return all(ch.isprintable() for ch in s)


def _double_quoted(s: str) -> str:
    # JSON string escapes are valid YAML double-quoted escapes; yaml.v3 keeps non-ASCII as-is.
    return json.dumps(s, ensure_ascii=False)


@functools.lru_cache(maxsize=8192)
def scalar(value: str) -> str:
    """Return the inline YAML text for a string value, quoted the way yaml.v3 does (memoized)."""
    if _NON_STRING.match(value) or value == "":
        return '"' + value + '"' if value.isprintable() else _double_quoted(value)
    if _plain_allowed(value):
        return value
    if all(ch.isprintable() for ch in value):
        return "'" + value.replace("'", "''") + "'"
    return _double_quoted(value)


def block_value(key: str, value: str, indent: str = "") -> str:
    """Emit ``key: value`` lines (literal block style when the value has newlines)."""
    if "\n" in value:
        chomp = "" if value.endswith("\n") else "-"
        body = value[:-1] if value.endswith("\n") else value
        lines = "".join(f"{indent}{INDENT}{line}\n" if line else "\n" for line in body.split("\n"))
        return f"{indent}{key}: |{chomp}\n{lines}"
    return f"{indent}{key}: {scalar(value)}\n"


def emit_string_map(key: str, mapping: dict[str, str], indent: str = "") -> str:
    """Emit a nested string->string map with sorted keys (Go maps are emitted sorted)."""
    out = [f"{indent}{key}:\n"]
    for k in sorted(mapping):
        out.append(block_value(scalar(k), mapping[k], indent + INDENT))
    return "".join(out)


def emit_list_of_maps(key: str, items: Iterable[list[tuple[str, object]]], indent: str = "") -> str:
    """Emit a list of maps as yaml.v3 does with 4-space indent (``    - k: v`` / ``      k: v``).

    Each item is a list of (key, value) pairs in struct field order; a value may be a string or a
    ``dict[str, str]`` (emitted as a nested map). Empty values must be filtered out by the caller.
    """
    out = [f"{indent}{key}:\n"]
    item_indent = indent + INDENT
    for pairs in items:
        for i, (k, v) in enumerate(pairs):
            lead = item_indent + ("- " if i == 0 else "  ")
            if isinstance(v, dict):
                out.append(emit_string_map(k, v, lead))
            else:
                out.append(f"{lead}{k}: {scalar(str(v))}\n")
    return "".join(out)


def _unquote(raw: str) -> str:
    if not raw:
        return ""
    c = raw[0]
    if c == '"':
        return json.loads(raw)
    if c == "'":
        return raw[1:-1].replace("''", "'")
    return raw


def parse_flat(text: str) -> dict[str, object]:
    """Parse a YAML mapping into strings (nested values stay lists/dicts of strings).

    Fast path: every line is ``key: scalar``. Anything else (indentation, block scalars, flow
    collections, comments) is handed to PyYAML's ``BaseLoader``. Raises ``ValueError`` when the text
    is not a mapping.
    """
    result: dict[str, object] = {}
    for line in text.splitlines():
        if not line:
            continue
        key, sep, raw = line.partition(": ")
        if (
            not sep
            or line[0] in " \t#-"
            or not raw
            or raw[0] in "|>[{&*!%@`#"
            or (raw[0] in "\"'" and (len(raw) < 2 or raw[-1] != raw[0]))
        ):
            return _parse_with_pyyaml(text)
        try:
            result[key] = _unquote(raw)
        except ValueError:
            return _parse_with_pyyaml(text)
    return result


def _parse_with_pyyaml(text: str) -> dict[str, object]:
    try:
        data = yaml.load(text, Loader=_BaseLoader)  # noqa: S506 - BaseLoader builds only str/list/dict
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}".splitlines()[0]) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("YAML document is not a mapping")
    return data
