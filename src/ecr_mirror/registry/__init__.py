"""The OCI distribution client for any v2 registry."""

from .auth import Credentials
from .client import ManifestHead, RegistryClient
from .errors import (
                     BlobUnknown,
                     ConnectionFailed,
                     LimitExceeded,
                     ManifestUnknown,
                     NotFound,
                     RateLimited,
                     RedirectRefused,
                     RegistryError,
                     ServerError,
                     Unauthorized,
)
from .retry import RetryPolicy

__all__ = [
    "BlobUnknown", "ConnectionFailed", "Credentials", "LimitExceeded", "ManifestHead",
    "ManifestUnknown", "NotFound", "RateLimited", "RedirectRefused", "RegistryClient",
    "RegistryError", "RetryPolicy", "ServerError", "Unauthorized",
]
