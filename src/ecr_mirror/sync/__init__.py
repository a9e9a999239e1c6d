"""Scheduled mirroring: the mirror config, tag selection and planning."""

from .config import ConfigError, ImageEntry, MirrorConfig, load_config
from .plan import Job, Plan, build_plan

__all__ = ["ConfigError", "ImageEntry", "Job", "MirrorConfig", "Plan", "build_plan", "load_config"]
