"""ecr-mirror: copy container images from any v2 registry into Amazon ECR."""

__version__ = "0.1.0"
