"""The exception types that mean "bad input" (params, files, network), not a bug.

Stage scripts print these as one message and exit non-zero; anything else keeps its traceback.
"""

from depthcore.config import ConfigError
from depthcore.data.nyuv2 import NYUv2Error
from depthcore.data.store import StoreError
from depthcore.download import DownloadError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DownloadError, NYUv2Error, StoreError, FileNotFoundError)
