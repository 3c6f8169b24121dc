"""The two errors a user sees as one line (`sentlab: error: ...`) instead of a traceback."""


class ConfigError(ValueError):
    """A bad setting or bad input, found before the run starts: the message names the setting and the fix."""


class RunError(RuntimeError):
    """A run that failed for a reason its message explains in full (e.g. a NaN loss); the run is FAILED."""
