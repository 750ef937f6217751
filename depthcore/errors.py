"""The exception types that mean "bad input" (params, files, network), not a bug.

Stage scripts print these as one message and exit non-zero; anything else keeps its traceback.
"""

from depthcore.config import ConfigError
from depthcore.data.nyuv2 import NYUv2Error
from depthcore.data.store import StoreError
from depthcore.download import DownloadError
from depthcore.models.clip_backbone import ClipError
from depthcore.models.sam import SamWeightsError
from depthcore.segments import SegmentsError
from depthcore.train import CheckpointError, TrainingError

USER_ERRORS: tuple[type[Exception], ...] = (
    ConfigError,
    ClipError,
    DownloadError,
    NYUv2Error,
    SamWeightsError,
    SegmentsError,
    StoreError,
    TrainingError,
    CheckpointError,
    FileNotFoundError,
)
