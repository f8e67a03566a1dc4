"""Reading desktop entries as a desktop does (the Desktop Entry Specification), for the tests."""

from __future__ import annotations

import re
from pathlib import Path

RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
STRING_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape_string(value: str) -> str:
    """A value of type string: ``\\s \\n \\t \\r \\\\``; any other escape is an error here."""
    return re.sub(r"\\(.)", lambda m: STRING_ESCAPES[m.group(1)], value)


def parse_exec(value: str) -> list[str]:
    """The argv a desktop runs for an Exec value; fails on what the specification forbids."""
    text = unescape_string(value)
    args: list[str] = []
    current: list[str] = []
    quoted = in_arg = False
    chars = iter(text)
    for c in chars:
        if quoted:
            if c == "\\":
                escaped = next(chars)
                assert escaped in '"`$\\', f"\\{escaped} inside quotes in {value!r}"
                current.append(escaped)
            elif c == '"':
                quoted = False
            else:
                current.append(c)
        elif c == '"':
            quoted = in_arg = True
        elif c == " ":
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
        else:
            assert c not in RESERVED, f"unquoted {c!r} in {value!r}"
            current.append(c)
            in_arg = True
    assert not quoted, f"unterminated quote in {value!r}"
    if in_arg:
        args.append("".join(current))

    def percent(m: re.Match[str]) -> str:
        assert m.group(1) == "%", f"a field code %{m.group(1)} in {value!r}"
        return "%"

    return [re.sub(r"%(.)", percent, a) for a in args]


def read_entry(path: Path) -> dict[str, str]:
    """The [Desktop Entry] group's keys (raw values), failing on a key given twice."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]", lines[0]
    keys: dict[str, str] = {}
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and key not in keys, line
        keys[key] = value
    return keys
