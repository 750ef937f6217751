"""The base type of every error that means "bad input" (params, files, network), not a bug.

Each module defines its own subclass (ConfigError, DownloadError, StoreError, ...). Stage scripts
print a DepthcoreError as one message and exit non-zero; anything else keeps its traceback.
"""


class DepthcoreError(Exception):
    """Bad params, a missing or corrupt file, a failed download: the message says how to fix it."""


class ConfigError(DepthcoreError, ValueError):
    """A params value is missing, unknown or invalid. The message names the dotted key."""
