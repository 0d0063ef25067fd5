"""The root of every user-facing error: the CLI prints these as one clean line, never a traceback."""


class MobstreamError(Exception):
    """A user-facing error; its message names the file, line, field or setting at fault."""


class ConfigError(MobstreamError):
    """A setting (CLI flag or MOBSTREAM_* variable) has a bad value."""
