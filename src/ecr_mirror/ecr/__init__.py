"""The ECR target, through the layer-upload API."""

from .names import EcrName, default_repository, parse_target
from ..settings import RepositorySettings
from .target import EcrRepository, TaggedImage

__all__ = ["EcrName", "EcrRepository", "RepositorySettings", "TaggedImage", "default_repository",
           "parse_target"]
