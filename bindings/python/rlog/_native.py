"""Finding and loading librlog.so, and the ctypes prototypes of its C ABI (include/rlog.h).

Lookup order (the first that loads wins): an explicit path given by the caller, the
``RLOG_LIB`` environment variable, ``librlog.so`` next to this package, then the system loader
(``ctypes.util.find_library("rlog")``, then ``librlog.so`` by name). When ``RLOG_LIB`` is set
it is the only place tried: a wrong ``RLOG_LIB`` is an error, never silently replaced by
another copy of the library.

Two handles are opened on the same file: calls that never block (log, stats, last_error,
version, initted) go through ``ctypes.PyDLL`` and keep the GIL, since releasing and retaking
it would cost more than the call itself; calls that may wait for the network (flush, free,
shutdown, init, new) go through ``ctypes.CDLL``, which releases the GIL so other Python
threads keep running.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import os
import threading
from typing import Dict, List, Optional, Tuple

from .errors import LibraryNotFoundError

LIB_NAME = "librlog.so"
ENV_VAR = "RLOG_LIB"


@dataclasses.dataclass(frozen=True)
class Stats:
    """A logger's counters: every field of ``struct rlog_stats``, in its order.

    At any quiescent moment ``logged + adopted == sent + lost + spooled + buffered`` (see
    :meth:`balanced`): no message disappears without being counted.
    """

    logged: int  #: messages accepted by log
    logged_bytes: int
    dropped: int  #: messages refused by log (buffer full, too big)
    dropped_bytes: int
    sent: int  #: messages delivered to the collector
    sent_bytes: int
    lost: int  #: messages accepted, then given up on
    lost_bytes: int
    spooled: int  #: messages now held on disk
    spooled_bytes: int
    buffered: int  #: messages now held in memory (in flight included)
    buffered_bytes: int
    retries: int  #: connect or send attempts repeated after a failure
    connects: int  #: connections established
    adopted: int  #: records taken over from a dead process's spool
    adopted_bytes: int
    rejected: int  #: records an output refused for good (part of lost)
    rejected_bytes: int

    def balanced(self) -> bool:
        """True when ``logged + adopted == sent + lost + spooled + buffered`` (the accounting
        identity)."""
        return self.logged + self.adopted == self.sent + self.lost + self.spooled + self.buffered


STATS_FIELDS: Tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Stats))


class CStats(ctypes.Structure):
    """``struct rlog_stats``, built from :class:`Stats`' field list (all ``uint64_t``)."""

    _fields_ = [(name, ctypes.c_uint64) for name in STATS_FIELDS]

    def to_stats(self) -> Stats:
        return Stats(*(getattr(self, name) for name in STATS_FIELDS))


_c = ctypes
# (name, restype, argtypes, may block -> needs the GIL released)
_PROTOTYPES = [
    ("rlog_init", _c.c_int, [_c.c_char_p, _c.c_char_p, _c.c_size_t], True),
    ("rlog_initted", _c.c_int, [], False),
    ("rlog_log", _c.c_int, [_c.c_char_p, _c.c_size_t], False),
    ("rlog_flush", _c.c_int64, [], True),
    ("rlog_last_error", _c.c_size_t, [_c.c_char_p, _c.c_size_t], False),
    ("rlog_stats", _c.c_int, [_c.POINTER(CStats), _c.c_size_t], False),
    ("rlog_shutdown", _c.c_int, [_c.c_int], True),
    ("rlog_version", _c.c_char_p, [], False),
    ("rlog_logger_new", _c.c_void_p, [_c.c_char_p, _c.c_char_p, _c.c_size_t], True),
    ("rlog_logger_log", _c.c_int, [_c.c_void_p, _c.c_char_p, _c.c_size_t], False),
    ("rlog_logger_flush", _c.c_int64, [_c.c_void_p], True),
    ("rlog_logger_last_error", _c.c_size_t, [_c.c_void_p, _c.c_char_p, _c.c_size_t], False),
    ("rlog_logger_stats", _c.c_int, [_c.c_void_p, _c.POINTER(CStats), _c.c_size_t], False),
    ("rlog_logger_free", _c.c_int, [_c.c_void_p, _c.c_int], True),
]


class Library:
    """One loaded librlog: its path and its typed entry points as attributes (``lib.rlog_log``)."""

    def __init__(self, path: str):
        self.path = path
        blocking = ctypes.CDLL(path)
        quick = ctypes.PyDLL(path)
        for name, restype, argtypes, may_block in _PROTOTYPES:
            fn = getattr(blocking if may_block else quick, name)
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)

    def __repr__(self) -> str:
        return f"<rlog.Library {self.path!r}>"

    def error_text(self, handle: Optional[int]) -> Optional[str]:
        """Takes the pending error of ``handle`` (None: the default logger), or None if none."""
        if handle:
            take = lambda buf, n: self.rlog_logger_last_error(handle, buf, n)  # noqa: E731
        else:
            take = self.rlog_last_error
        size = take(None, 0)  # the length; the error stays pending
        if size == 0:
            return None
        # Room to spare: the worker may replace the error with a longer one meanwhile.
        cap = max(size + 1, 1024)
        buf = ctypes.create_string_buffer(cap)
        full = take(buf, cap)
        if full == 0:
            return None
        text = buf.value.decode("utf-8", "replace")
        return text if full < cap else text + "..."


def _candidates() -> List[Tuple[str, str]]:
    """(where, path-or-name) in lookup order, RLOG_LIB excluded."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), LIB_NAME)
    out = [("next to the package", here)]
    found = ctypes.util.find_library("rlog")
    if found:
        out.append(("ctypes.util.find_library('rlog')", found))
    out.append(("the system loader", LIB_NAME))
    return out


def locate(path: Optional[str] = None) -> Library:
    """Loads librlog from ``path`` when given, else by the lookup order in this module's doc.

    Raises :class:`LibraryNotFoundError` naming each place tried and the loader's reason.
    """
    if path is not None:
        tries = [("the given path", os.fspath(path))]
    elif os.environ.get(ENV_VAR):
        tries = [(f"${ENV_VAR}", os.environ[ENV_VAR])]
    else:
        tries = _candidates()
    failures = []
    for where, candidate in tries:
        if os.sep in candidate and not os.path.exists(candidate):
            failures.append(f"  {where}: {candidate}: no such file")
            continue
        try:
            return Library(candidate)
        except OSError as e:
            failures.append(f"  {where}: {candidate}: {e}")
        except AttributeError as e:
            failures.append(f"  {where}: {candidate}: not an rlog library ({e})")
    hint = f"set {ENV_VAR}=/path/to/{LIB_NAME}, or put {LIB_NAME} next to the rlog package or on the loader path"
    raise LibraryNotFoundError("cannot load librlog; tried:\n" + "\n".join(failures) + "\n" + hint)


_cache: Dict[Optional[str], Library] = {}
_cache_lock = threading.Lock()


def load(path: Optional[str] = None) -> Library:
    """:func:`locate`, once per path for the life of the process (None: the default lookup)."""
    key = os.path.abspath(os.fspath(path)) if path is not None else None
    with _cache_lock:
        lib = _cache.get(key)
        if lib is None:
            lib = _cache[key] = locate(path)
        return lib
