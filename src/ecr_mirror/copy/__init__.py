"""The copy engine and its report."""

from .engine import copy_image
from .options import CopyOptions, Progress
from .report import COPIED, DEFERRED, FAILED, SUPERSEDED, UNCHANGED, CopyReport

__all__ = ["COPIED", "DEFERRED", "FAILED", "SUPERSEDED", "UNCHANGED", "CopyOptions", "CopyReport",
           "Progress", "copy_image"]
