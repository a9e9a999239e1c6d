"""The OCI distribution client for any v2 registry."""

from .auth import Credentials
from .client import ManifestHead, RegistryClient
from .errors import (BlobUnknown, ConnectionFailed, ManifestUnknown, NotFound, RateLimited,
                     RegistryError, ServerError, Unauthorized)
from .transport import RetryPolicy

__all__ = [
    "BlobUnknown", "ConnectionFailed", "Credentials", "ManifestHead", "ManifestUnknown",
    "NotFound", "RateLimited", "RegistryClient", "RegistryError", "RetryPolicy", "ServerError",
    "Unauthorized",
]
