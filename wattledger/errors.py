"""Errors that reach a person.

Every error a user can cause or fix is a :class:`WattledgerError` whose message is one line that
names the thing at fault and the fix. The CLI prints it without a traceback and exits with
``exit_code``.
"""


class WattledgerError(Exception):
    """A problem the user can act on; the message says what and how."""

    exit_code = 1


class ConfigError(WattledgerError):
    """The configuration file, an environment variable or a flag is wrong."""

    exit_code = 2


class NvmlUnavailable(WattledgerError):
    """No NVIDIA driver or NVML library on this machine."""

    exit_code = 3


class DatabaseError(WattledgerError):
    """The database cannot be reached, or its schema is not current."""

    exit_code = 4
