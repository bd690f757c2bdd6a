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
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional, Union

from . import _native
from .config import ConfigLike
from .errors import RlogError
from .logger import Logger, encode


class RlogHandler(logging.Handler):
    """A logging handler over an rlog :class:`Logger`.

    ``config`` is either an existing :class:`Logger` (shared, not closed by the handler
    unless ``close_logger=True``) or config text / a mapping, from which the handler creates a
    logger it owns and closes in :meth:`close`. Raises :class:`rlog.ConfigError` for a config
    the library refuses.
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
    ):
        super().__init__(level)
        if isinstance(config, Logger):
            self.logger = config
            self._owns = bool(close_logger)
        else:
            self.logger = Logger(config, lib=lib)
            self._owns = True if close_logger is None else close_logger
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
        delivery is not raised: the messages stay buffered, are retried, and are counted."""
        # Not under the handler's lock: emit() in other threads must not wait for the network.
        if self.logger.closed:
            return
        try:
            self.logger.flush()
        except RlogError:
            pass

    def close(self) -> None:
        """Closes the logger when the handler owns it (delivering what it holds within the
        config's ``timeout``), then the handler itself. What could not be delivered is lost
        and, as ``logging`` does with its own failures, said on ``sys.stderr``: at interpreter
        exit (``logging.shutdown()``) nobody is left to read the stats."""
        try:
            if self._owns and not self.logger.closed:
                try:
                    held = self.logger.stats().buffered
                except RlogError:  # closed meanwhile by another thread
                    held = 0
                # close() answers for the logger's whole life (an earlier, reported loss makes
                # it False too): only what it held now can be lost by this close.
                if not self.logger.close() and held:
                    sys.stderr.write(
                        f"rlog: RlogHandler closed its logger before every message was delivered "
                        f"({held} held at close; what its timeout did not allow is lost)\n")
        finally:
            super().close()

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<RlogHandler {self.logger!r} ({level})>"

