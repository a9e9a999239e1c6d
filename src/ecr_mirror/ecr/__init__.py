"""The ECR target, through the layer-upload API."""

from ..settings import RepositorySettings
from .names import EcrName, default_repository, parse_target
from .target import EcrRepository, TaggedImage

__all__ = ["EcrName", "EcrRepository", "RepositorySettings", "TaggedImage", "default_repository",
           "parse_target"]
