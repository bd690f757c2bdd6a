"""Turning a Python mapping into rlog config text (SPEC §3: one ``key = value`` per line).

``{"host": "127.0.0.1", "port": 5140, "ssl": True, "log_encoder": ["gzip", "prefix [A] "]}``
becomes::

    host = 127.0.0.1
    port = 5140
    ssl = true
    log_encoder = gzip
    log_encoder = "prefix [A] "

Values: ``str`` as is (quoted with ``"`` and ``\\" \\\\ \\n \\t`` escapes when it would not
survive the line syntax otherwise: empty, leading or trailing blanks, a leading quote, a tab,
CR or newline, a ``#`` first or after a blank), ``bool`` as ``true``/``false``, ``int``/``float`` in decimal, ``None`` leaves the
key out. A list or tuple repeats the key, and is allowed only for the repeatable keys
(``logger``, ``log_encoder``, ``log_route``). The library validates everything else and reports
it with its own wording.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Iterable, Mapping, Union

REPEATABLE = frozenset({"logger", "log_encoder", "log_route"})
_KEY = re.compile(r"^[A-Za-z0-9_.\-]+$")
# A "#" first or after a blank would read as a comment after the value (an init error).
_NEEDS_QUOTES = re.compile(r'^$|^\s|\s$|^"|[\t\r\n]|^#|\s#')

ConfigLike = Union[str, Mapping[str, Any]]


def quote(value: str) -> str:
    """``value`` as the library's parser will read it back: unchanged when safe, else quoted."""
    if not _NEEDS_QUOTES.search(value):
        return value
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    )
    return f'"{escaped}"'


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"config key {key!r}: {value!r} is not a finite number")
        return repr(value)
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, os.PathLike):
        path = os.fspath(value)
        if isinstance(path, str):
            return quote(path)
    raise TypeError(f"config key {key!r}: expected str, path, int, float or bool, got {type(value).__name__}")


def to_text(config: ConfigLike) -> str:
    """Config text from ``config`` (a str is returned unchanged).

    Raises ``TypeError`` for a value of an unsupported type or a list on a key that cannot
    repeat, ``ValueError`` for a malformed key or a NUL character anywhere.
    """
    if isinstance(config, str):
        text = config
    elif isinstance(config, Mapping):
        lines = []
        for key, value in config.items():
            if not isinstance(key, str) or not _KEY.match(key):
                raise ValueError(f"config key {key!r}: keys are letters, digits, '_', '-' and '.'")
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                if key.replace("-", "_") not in REPEATABLE:
                    raise TypeError(
                        f"config key {key!r} takes one value; only {sorted(REPEATABLE)} may be lists"
                    )
                values: Iterable[Any] = value
            else:
                values = (value,)
            lines.extend(f"{key} = {_scalar(key, v)}" for v in values)
        text = "\n".join(lines) + "\n"
    else:
        raise TypeError(f"config must be a str or a mapping, got {type(config).__name__}")
    if "\0" in text:
        raise ValueError("config text contains a NUL character")
    return text
