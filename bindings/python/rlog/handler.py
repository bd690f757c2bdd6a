"""`RlogHandler`: a standard ``logging.Handler`` that ships formatted records through rlog.

Each record is formatted with the handler's Formatter (``logging.Formatter`` by default),
gets ``terminator`` appended unless it already ends with it (as ``StreamHandler`` does, but
without doubling a newline the message already has), is encoded by :func:`rlog.logger.encode`
(UTF-8 with ``surrogateescape``, falling back to ``backslashreplace``), and is buffered by
an :class:`rlog.Logger`. ``emit`` never blocks on the network.

Failures (a closed logger, a formatting error) go to ``handleError`` as with every standard
handler. A record the library drops because its buffer is full is not a failure of the
handler: the library counts it (``handler.logger.stats().dropped``) and keeps the reason
(``handler.logger.last_error()``), exactly as for direct ``Logger.log`` calls, so a full
buffer does not turn into a flood of tracebacks on stderr.

Works with ``logging.config.dictConfig``::

    {"class": "rlog.RlogHandler", "config": {"host": "127.0.0.1", "port": 5140}}

Defaults that differ from the library's: a config the handler builds its logger from gets
``periodic_flush = 1`` unless it sets ``periodic_flush`` (or ``max_coalescing_delay``) itself (``0`` turns it off), so a lone
record reaches the collector within about a second instead of waiting for ``flush_limit`` bytes
or the exit. At interpreter exit (``logging.shutdown``) the handler does not wait in
:meth:`RlogHandler.flush`: its :meth:`RlogHandler.close` delivers what is held within
``close_timeout`` (default: the config's ``timeout``, 1 s), so a dead collector delays the exit
by that much, not by the retries of a flush.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
from typing import Mapping, Optional, Union

from . import _native
from .config import ConfigLike
from .errors import RlogError
from .logger import Logger, encode

#: What a handler-made logger gets unless its config sets the key (see the module doc).
DEFAULTS = {"periodic_flush": 1}

#: Other names the library takes for a key of :data:`DEFAULTS` (setting both is a config error).
ALIASES = {"periodic_flush": ("max_coalescing_delay",)}

_KEY_LINE = re.compile(r"^[ \t]*([^#;=\s][^=]*?)[ \t]*=")

# Set by an exit hook that runs before logging's own (atexit runs hooks in reverse order of
# registration, and `logging` registered its shutdown when it was imported, before this module).
_exiting = False


def _at_exit() -> None:
    global _exiting
    _exiting = True


atexit.register(_at_exit)


def _norm(key: str) -> str:
    return key.strip().replace("-", "_")


def _sets(keys: set, key: str) -> bool:
    return key in keys or any(a in keys for a in ALIASES.get(key, ()))


def with_defaults(config: ConfigLike) -> ConfigLike:
    """``config`` with :data:`DEFAULTS` added for the keys it does not set."""
    if isinstance(config, str):
        keys = set()
        for line in config.split("\n"):  # the library's line split
            m = _KEY_LINE.match(line)
            if m:
                keys.add(_norm(m.group(1)))
        extra = [f"{k} = {v}" for k, v in DEFAULTS.items() if not _sets(keys, k)]
        if not extra:
            return config
        sep = "" if config.endswith("\n") or not config else "\n"
        return config + sep + "\n".join(extra) + "\n"
    if isinstance(config, Mapping):
        # None leaves a key out of the text (rlog.config_text): not set.
        keys = {_norm(k) for k, v in config.items() if isinstance(k, str) and v is not None}
        out = dict(config)
        for k, v in DEFAULTS.items():
            if not _sets(keys, k):
                out[k] = v
        return out
    return config  # the Logger reports the type error


class RlogHandler(logging.Handler):
    """A logging handler over an rlog :class:`Logger`.

    ``config`` is either an existing :class:`Logger` (shared, not closed by the handler
    unless ``close_logger=True``) or config text / a mapping, from which the handler creates a
    logger it owns and closes in :meth:`close` (with :data:`DEFAULTS` for the keys the config
    does not set). Raises :class:`rlog.ConfigError` for a config the library refuses, and
    :class:`rlog.LibraryNotFoundError` when librlog cannot be loaded; a handler whose
    constructor raised is never registered with ``logging``, so ``logging.shutdown`` does not
    trip over it. ``close_timeout`` (seconds) bounds the delivery in :meth:`close`; ``None``
    uses the config's ``timeout``.
    """

    terminator = "\n"

    def __init__(
        self,
        config: Union[Logger, ConfigLike],
        level: int = logging.NOTSET,
        *,
        terminator: Optional[str] = None,
        close_logger: Optional[bool] = None,
        lib: Union[None, str, os.PathLike, _native.Library] = None,
        close_timeout: Optional[float] = None,
    ):
        # The logger first: logging.Handler.__init__ registers the handler for
        # logging.shutdown(), which must never meet one without a logger (a failed dictConfig
        # keeps the half-built handler alive in its traceback).
        if isinstance(config, Logger):
            logger = config
            owns = bool(close_logger)
        else:
            logger = Logger(with_defaults(config), lib=lib)
            owns = True if close_logger is None else close_logger
        self.logger = logger
        self._owns = owns
        self._close_timeout_ms = -1 if close_timeout is None else max(0, int(close_timeout * 1000))
        super().__init__(level)
        if terminator is not None:
            self.terminator = terminator

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            term = self.terminator
            if term and not msg.endswith(term):
                msg += term
            self.logger.log(encode(msg))
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Sends what is buffered and waits: with the collector unreachable, up to
        (``max_retry_times`` + 1)² attempts of up to ``timeout`` each, plus backoff. A failed
        delivery is not raised: the messages stay buffered, are retried, and are counted.

        At interpreter exit it returns at once: ``logging.shutdown`` calls :meth:`close` next,
        which delivers within ``close_timeout``."""
        # Not under the handler's lock: emit() in other threads must not wait for the network.
        logger = getattr(self, "logger", None)
        if logger is None or logger.closed or _exiting:
            return
        try:
            logger.flush()
        except RlogError:
            pass

    def close(self) -> None:
        """Closes the logger when the handler owns it (delivering what it holds within the
        ``close_timeout``, by default the config's ``timeout``), then the handler itself. What
        could not be delivered is lost and, as ``logging`` does with its own failures, said on
        ``sys.stderr``: at interpreter exit (``logging.shutdown()``) nobody is left to read the
        stats."""
        logger = getattr(self, "logger", None)
        try:
            if logger is not None and getattr(self, "_owns", False) and not logger.closed:
                try:
                    held = logger.stats().buffered
                except RlogError:  # closed meanwhile by another thread
                    held = 0
                # close() answers for the logger's whole life (an earlier, reported loss makes
                # it False too): only what it held now can be lost by this close.
                if not logger.close(self._close_timeout_ms) and held:
                    sys.stderr.write(
                        f"rlog: RlogHandler closed its logger before every message was delivered "
                        f"({held} held at close; what its timeout did not allow is lost)\n")
        finally:
            super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(getattr(self, "level", logging.NOTSET))
        return f"<RlogHandler {getattr(self, 'logger', None)!r} ({level})>"

