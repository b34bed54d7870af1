"""Request-body decoding with the error texts of Go's ``json.Decoder`` + ``DisallowUnknownFields``.

The real handlers decode a struct from at most 1 MiB of the body and answer 400 with
``invalid json: <Go error>`` (docs/conductor-loop.md, Errors). This module reproduces the common cases:

* empty body -> ``EOF``; truncated document -> ``unexpected EOF``;
* syntax errors -> ``invalid character 'x' looking for beginning of value`` and friends;
* a second value after the document -> ``unexpected trailing data`` (no ``invalid json:`` prefix);
* unknown keys -> ``json: unknown field "x"``; keys match fields case-insensitively like Go;
* wrong types -> ``json: cannot unmarshal number into Go struct field T.f of type string``;
  ``null`` leaves a field at its zero value; the first semantic error in document order wins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_BODY = 1 << 20

STRING, BOOL, INT, STR_MAP, STR_LIST, OBJECT = "string", "bool", "int", "map[string]string", "[]string", "object"


@dataclass(frozen=True, slots=True)
class Schema:
    """A Go request struct: its name and ``json tag -> kind`` in field order."""

    name: str
    fields: dict[str, str]

    def lookup(self, key: str) -> str | None:
        """The field a JSON key decodes into (exact match first, then case-insensitive)."""
        if key in self.fields:
            return key
        low = key.lower()
        for name in self.fields:
            if name.lower() == low:
                return name
        return None


class DecodeError(ValueError):
    """A 400 message for the error envelope."""


_KIND_OF = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}


def _json_kind(value: Any) -> str:
    return _KIND_OF.get(type(value), "value")


def _syntax_error(text: str, exc: json.JSONDecodeError) -> DecodeError:
    pos = exc.pos
    rest = text[pos:]
    if not rest.strip() or exc.msg.startswith("Unterminated string"):
        return DecodeError("invalid json: unexpected EOF")
    ch = rest[0]
    quoted = "'\\''" if ch == "'" else f"'{ch}'" if ch.isprintable() else "'" + json.dumps(ch)[1:-1] + "'"
    msg = exc.msg
    if msg.startswith("Expecting value"):
        where = "looking for beginning of value"
    elif msg.startswith("Expecting ':'"):
        where = "after object key"
    elif msg.startswith("Expecting ','"):
        before = text[:pos].rstrip()
        where = "after array element" if _innermost_is_array(before) else "after object key:value pair"
    elif msg.startswith("Expecting property name"):
        where = "looking for beginning of object key string"
    elif msg.startswith("Invalid control character"):
        where = "in string literal"
    elif msg.startswith("Invalid \\escape"):
        where = "in string escape code"
    else:
        where = "looking for beginning of value"
    return DecodeError(f"invalid json: invalid character {quoted} {where}")


def _innermost_is_array(prefix: str) -> bool:
    depth_stack: list[str] = []
    in_str = esc = False
    for ch in prefix:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth_stack.append(ch)
        elif ch in "]}" and depth_stack:
            depth_stack.pop()
    return bool(depth_stack) and depth_stack[-1] == "["


def _check_kind(schema: Schema, field: str, kind: str, value: Any) -> tuple[Any, str | None]:
    """Return (converted value, error) for one field value."""
    where = f"Go struct field {schema.name}.{field}"
    if value is None:
        return None, None
    if kind == STRING:
        if isinstance(value, str):
            return value, None
        return None, f"json: cannot unmarshal {_json_kind(value)} into {where} of type string"
    if kind == BOOL:
        if isinstance(value, bool):
            return value, None
        return None, f"json: cannot unmarshal {_json_kind(value)} into {where} of type bool"
    if kind == INT:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        return None, f"json: cannot unmarshal {_json_kind(value)} into {where} of type int"
    if kind == STR_MAP:
        if not isinstance(value, dict):
            return None, f"json: cannot unmarshal {_json_kind(value)} into {where} of type map[string]string"
        out: dict[str, str] = {}
        for k, v in value.items():
            if v is None:
                out[k] = ""
            elif isinstance(v, str):
                out[k] = v
            else:
                return None, f"json: cannot unmarshal {_json_kind(v)} into {where} of type string"
        return out, None
    if kind == STR_LIST:
        if not isinstance(value, list):
            return None, f"json: cannot unmarshal {_json_kind(value)} into {where} of type []string"
        items: list[str] = []
        for v in value:
            if v is None:
                items.append("")
            elif isinstance(v, str):
                items.append(v)
            else:
                return None, f"json: cannot unmarshal {_json_kind(v)} into {where} of type string"
        return items, None
    if kind == OBJECT:
        if isinstance(value, dict):
            return value, None
        return None, f"json: cannot unmarshal {_json_kind(value)} into {where} of type object"
    return value, None


def decode(body: bytes, schema: Schema) -> dict[str, Any]:
    """Decode a request body (already cut at :data:`MAX_BODY`) into ``{field: value}``.

    Absent and ``null`` fields are missing from the result. Raises :class:`DecodeError` with the
    message the real server puts in the 400 envelope.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("utf-8", "replace")
    if not text.strip():
        raise DecodeError("invalid json: EOF")
    try:
        value, end = json.JSONDecoder().raw_decode(text, len(text) - len(text.lstrip()))
    except json.JSONDecodeError as exc:
        raise _syntax_error(text, exc) from None
    except RecursionError:
        raise DecodeError("invalid json: exceeded max depth") from None
    if value is None:
        result: dict[str, Any] = {}
    elif not isinstance(value, dict):
        raise DecodeError(f"invalid json: json: cannot unmarshal {_json_kind(value)} into Go value of type "
                          f"api.{schema.name}")  # fmt: skip
    else:
        result = {}
        first_error: str | None = None
        for key, raw in value.items():
            field = schema.lookup(key)
            if field is None:
                first_error = first_error or f'json: unknown field "{key}"'
                continue
            converted, err = _check_kind(schema, field, schema.fields[field], raw)
            if err:
                first_error = first_error or err
            elif converted is not None:
                result[field] = converted
        if first_error:
            raise DecodeError(f"invalid json: {first_error}")
    rest = text[end:]
    if rest.strip():
        raise DecodeError("unexpected trailing data")
    return result


TASK_CREATE = Schema("TaskCreateRequest", {
    "project_id": STRING, "task_id": STRING, "agent_type": STRING, "prompt": STRING, "config": STR_MAP,
    "project_root": STRING, "attach_mode": STRING, "process_import": OBJECT, "depends_on": STR_LIST,
    "thread_parent": OBJECT, "thread_message_type": STRING,
})  # fmt: skip
POST_MESSAGE = Schema("PostMessageRequest", {
    "project_id": STRING, "task_id": STRING, "run_id": STRING, "type": STRING, "body": STRING,
})  # fmt: skip
