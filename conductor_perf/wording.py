"""Words for counts in titles, figure names and messages: ``1 agent``, ``50 agents``.

Example::

    >>> plural(1, "agent"), plural(50, "agent"), plural(4, "process"), plural(2, "entry")
    ('1 agent', '50 agents', '4 processes', '2 entries')
    >>> plural(1, "client", "clients refused")  # an explicit plural form
    '1 client'
"""

from __future__ import annotations


def plural_form(noun: str) -> str:
    """The regular English plural of a noun: ``agent`` -> ``agents``, ``process`` -> ``processes``."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def plural(count: float, noun: str, plural: str | None = None) -> str:
    """``count`` and the noun in the right number: ``1 agent``, ``0 agents``, ``2.5 seconds``."""
    number = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{number} {noun if count == 1 else (plural or plural_form(noun))}"
