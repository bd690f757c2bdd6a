"""The exceptions the rlog binding raises; every message is the library's own where it has one."""


class RlogError(Exception):
    """Base of every rlog error: a failed flush, a closed logger, an uninitialised default logger."""


class ConfigError(RlogError, ValueError):
    """The library refused the config text; the message is the library's (resty's wording)."""


class LibraryNotFoundError(RlogError, ImportError):
    """librlog.so could not be loaded; the message lists every place that was tried and why."""
