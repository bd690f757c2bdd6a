"""`Logger`, a Python object over one independent rlog logger (``rlog_logger_*``), and the
module-level functions over the process-wide default logger (``rlog_init`` & co).

Strings are encoded as UTF-8 with ``errors="surrogateescape"``, so text that came from bytes
through ``os.fsdecode``/``surrogateescape`` goes out as the original bytes; a string that still
cannot be encoded (a lone surrogate outside U+DC80..U+DCFF) is sent with
``errors="backslashreplace"`` rather than raising: a logger never loses a line over its text.
Bytes are sent exactly as given.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from typing import Optional, Union

from . import _native
from .config import ConfigLike, to_text
from .errors import ConfigError, RlogError

Message = Union[bytes, bytearray, memoryview, str]

_ERR_LEN = 1024


def encode(msg: Message) -> bytes:
    """``msg`` as the bytes rlog will carry (see the module doc for the str policy)."""
    if isinstance(msg, bytes):
        return msg
    if isinstance(msg, str):
        try:
            return msg.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return msg.encode("utf-8", "backslashreplace")
    if isinstance(msg, (bytearray, memoryview)):
        return bytes(msg)
    raise TypeError(f"rlog messages are bytes or str, not {type(msg).__name__}")


def _lib(lib: Union[None, str, os.PathLike, _native.Library]) -> _native.Library:
    if isinstance(lib, _native.Library):
        return lib
    return _native.load(lib)


_live: "weakref.WeakSet[Logger]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay held forever in the child.
    for lg in list(_live):
        lg._reinit_lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Logger:
    """One independent rlog logger with its own buffer, thread and counters.

    ``Logger(config)`` takes config text or a mapping (see :mod:`rlog.config`) and raises
    :class:`ConfigError` with the library's message when it is refused. ``lib`` is a path to
    librlog.so or a loaded :class:`rlog.Library` (default: the lookup of :mod:`rlog._native`).

    Thread-safe; usable in a child after ``os.fork()`` (the child's logger starts empty, with
    zeroed counters, and never re-sends what the parent had buffered). Use it as a context
    manager, or call :meth:`close`: that delivers what is buffered within the timeout.
    """

    def __init__(self, config: ConfigLike, lib: Union[None, str, os.PathLike, _native.Library] = None):
        self._handle: Optional[int] = None
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0
        self.lib = _lib(lib)
        text = to_text(config).encode("utf-8")
        err = ctypes.create_string_buffer(_ERR_LEN)
        handle = self.lib.rlog_logger_new(text, err, _ERR_LEN)
        if not handle:
            raise ConfigError(err.value.decode("utf-8", "replace") or "rlog_logger_new failed")
        self._handle = handle
        _live.add(self)

    def _reinit_lock(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._busy = 0

    def _closed_error(self) -> RlogError:
        return RlogError("logger is closed")

    def log(self, msg: Message) -> int:
        """Buffers one message; never blocks on the network.

        Returns the bytes buffered, or 0 when the message was dropped (the buffer would pass
        ``drop_limit``; counted in ``stats().dropped``, and :meth:`last_error` says why).
        Raises :class:`RlogError` when the logger is closed, ``TypeError`` for a non-text message.
        """
        data = encode(msg)
        with self._lock:
            if self._handle is None:
                raise self._closed_error()
            n = self.lib.rlog_logger_log(self._handle, data, len(data))
        if n < 0:
            raise RlogError(self.last_error() or "rlog_logger_log failed")
        return n

    def _enter_blocking(self) -> int:
        with self._lock:
            if self._handle is None:
                raise self._closed_error()
            self._busy += 1
            return self._handle

    def _leave_blocking(self) -> None:
        with self._lock:
            self._busy -= 1
            if self._busy == 0:
                self._idle.notify_all()

    def flush(self) -> int:
        """Sends everything buffered and waits for the outcome (bounded by ``timeout`` and the
        retries). Returns the bytes delivered (0: nothing to send). Raises :class:`RlogError`
        with the library's message (``try to connect to the log server failed after N retries:
        ...``) when delivery failed; the messages stay buffered and are retried later.
        """
        handle = self._enter_blocking()
        try:
            n = self.lib.rlog_logger_flush(handle)
            if n < 0:
                raise RlogError(self.lib.error_text(handle) or "flush failed")
            return n
        finally:
            self._leave_blocking()

    def last_error(self) -> Optional[str]:
        """The pending error (each error is returned once), or None. None after close."""
        with self._lock:
            if self._handle is None:
                return None
            return self.lib.error_text(self._handle)

    def stats(self) -> _native.Stats:
        """The counters now. Raises :class:`RlogError` when the logger is closed."""
        out = _native.CStats()
        with self._lock:
            if self._handle is None:
                raise self._closed_error()
            rc = self.lib.rlog_logger_stats(self._handle, ctypes.byref(out), ctypes.sizeof(out))
        if rc != 0:
            raise RlogError("rlog_logger_stats failed")
        return out.to_stats()

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self, timeout_ms: int = -1) -> bool:
        """Delivers what is buffered within ``timeout_ms`` (negative: the config's ``timeout``),
        stops the logger's thread and frees it. Waits for flushes in progress in other threads.

        Returns True when every message this logger accepted was delivered (also when it was
        already closed), False otherwise (see the stats taken before closing).
        """
        with self._lock:
            handle = self._handle
            if handle is None:
                return True
            self._handle = None
            while self._busy:
                self._idle.wait()
        _live.discard(self)
        return self.lib.rlog_logger_free(handle, int(timeout_ms)) == 0

    def __enter__(self) -> "Logger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is None:
            return
        self._handle = None
        try:
            self.lib.rlog_logger_free(handle, -1)
        except Exception:  # interpreter shutdown: ctypes may already be torn down
            pass

    def __repr__(self) -> str:
        state = "closed" if self._handle is None else "open"
        return f"<rlog.Logger {state} at {id(self):#x}>"


# --- the process-wide default logger (lua-resty-logger-socket's model) ---------------------

_default_lib: Optional[_native.Library] = None


def _dlib() -> _native.Library:
    global _default_lib
    if _default_lib is None:
        _default_lib = _native.load()
    return _default_lib


def init(config: ConfigLike, lib: Union[None, str, os.PathLike, _native.Library] = None) -> None:
    """Initialises (or re-initialises) the default logger. Raises :class:`ConfigError`.

    ``lib`` chooses the library for all module-level functions from now on.
    """
    global _default_lib
    library = _lib(lib) if lib is not None else _dlib()
    text = to_text(config).encode("utf-8")
    err = ctypes.create_string_buffer(_ERR_LEN)
    if library.rlog_init(text, err, _ERR_LEN) != 0:
        raise ConfigError(err.value.decode("utf-8", "replace") or "rlog_init failed")
    _default_lib = library


def initted() -> bool:
    """True after a successful :func:`init` in this process (and before :func:`shutdown`)."""
    return _dlib().rlog_initted() == 1


def log(msg: Message) -> int:
    """As :meth:`Logger.log` for the default logger; raises :class:`RlogError` when not
    initialised."""
    data = encode(msg)
    n = _dlib().rlog_log(data, len(data))
    if n < 0:
        raise RlogError("not initialized" if not initted() else (last_error() or "rlog_log failed"))
    return n


def flush() -> int:
    """As :meth:`Logger.flush` for the default logger."""
    lib = _dlib()
    n = lib.rlog_flush()
    if n < 0:
        if not initted():
            raise RlogError("not initialized")
        raise RlogError(lib.error_text(None) or "flush failed")
    return n


def last_error() -> Optional[str]:
    """The default logger's pending error (returned once), or None."""
    return _dlib().error_text(None)


def stats() -> _native.Stats:
    """The default logger's counters; raises :class:`RlogError` when not initialised."""
    out = _native.CStats()
    if _dlib().rlog_stats(ctypes.byref(out), ctypes.sizeof(out)) != 0:
        raise RlogError("not initialized")
    return out.to_stats()


def shutdown(timeout_ms: int = -1) -> bool:
    """Delivers, stops and uninstalls the default logger. Returns True when everything it
    accepted was delivered; raises :class:`RlogError` when not initialised."""
    rc = _dlib().rlog_shutdown(int(timeout_ms))
    if rc < 0:
        raise RlogError("not initialized")
    return rc == 0


def version() -> str:
    """The library's version string, such as ``"0.1.0"``."""
    return _dlib().rlog_version().decode("ascii", "replace")
