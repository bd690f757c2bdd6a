"""rlog for Python: ship logs to a remote collector through librlog (ctypes).

- :class:`Logger` — one independent logger (``rlog_logger_*``): ``log``, ``flush``,
  ``stats``, ``last_error``, ``close``; a context manager.
- :class:`RlogHandler` — a ``logging.Handler`` over a :class:`Logger`.
- :func:`init`, :func:`initted`, :func:`log`, :func:`flush`, :func:`last_error`,
  :func:`stats`, :func:`shutdown`, :func:`version` — the process-wide default logger
  (lua-resty-logger-socket's model).
- :func:`load_library` — find librlog.so: ``RLOG_LIB``, next to this package, the system loader.
"""

from ._native import Library, Stats
from ._native import load as load_library
from .config import to_text as config_text
from .errors import ConfigError, LibraryNotFoundError, RlogError
from .handler import RlogHandler
from .logger import Logger, flush, init, initted, last_error, log, shutdown, stats, version

__all__ = [
    "ConfigError",
    "Library",
    "LibraryNotFoundError",
    "Logger",
    "RlogError",
    "RlogHandler",
    "Stats",
    "config_text",
    "flush",
    "init",
    "initted",
    "last_error",
    "load_library",
    "log",
    "shutdown",
    "stats",
    "version",
]

__version__ = "0.1.0"
