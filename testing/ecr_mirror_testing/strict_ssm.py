"""SSM Parameter Store's value-size limits, enforced on top of moto's SSM.

moto (5.2) stores a parameter value of any length whatever its ``Tier``; AWS
refuses a value over 4,096 characters in the Standard tier and over 8,192 in the
Advanced tier (`Parameter Store quotas`: "Parameter value size, Standard 4 KB,
Advanced 8 KB"). A config that fits on moto could therefore fail on AWS. This
module patches moto's ``SSMBackend.put_parameter`` (the model layer, so the
in-process ``mock_aws`` and the server both see it)::

    with mock_aws(), strict_ssm():      # or enable() ... disable()
        ssm.put_parameter(...)          # ValidationException past the tier's limit

The tier a value is checked against is the one AWS would give the parameter:
``Tier`` if sent, else the existing parameter's tier (an overwrite keeps it),
else the account default (Standard). ``Intelligent-Tiering`` is Standard when
the value fits and Advanced otherwise, as the Parameter Store guide describes.
The Standard message is AWS's own (quoted in SDK and Terraform issue reports);
AWS's wording for an Advanced value over 8 KB is not documented, so that one
follows the same pattern (an assumption).
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

from moto.ssm.exceptions import ValidationException
from moto.ssm.models import SimpleSystemManagerBackend as SSMBackend

__all__ = ["LIMITS", "disable", "enable", "is_enabled", "strict_ssm"]

#: The largest value (in characters) each tier holds.
LIMITS = {"Standard": 4096, "Advanced": 8192}
_GUIDE = "https://docs.aws.amazon.com/systems-manager/latest/userguide/parameter-store-advanced-parameters.html"
_lock = threading.Lock()
_original: Any = None


def _tier(backend: SSMBackend, name: str, tier: str | None, value: str) -> str:
    if tier is None:
        previous = backend.get_parameter(name)  # moto normalises the name
        tier = previous.tier if previous else backend.default_parameter_tier
    if tier == "Intelligent-Tiering":
        return "Standard" if len(value) <= LIMITS["Standard"] else "Advanced"
    return tier or "Standard"


def _put_parameter(self: SSMBackend, *args: Any, **kwargs: Any) -> Any:
    bound = inspect.signature(_original).bind(self, *args, **kwargs)
    call = bound.arguments
    name, value = call["name"], call["value"] or ""
    effective = _tier(self, name, call.get("tier"), value)
    limit = LIMITS.get(effective)
    if limit is not None and len(value) > limit:
        if effective == "Standard":
            raise ValidationException(
                "Standard tier parameters support a maximum parameter value of 4096 characters. "
                "To create a larger parameter value, upgrade the parameter to use the "
                f"advanced-parameter tier. For more information, see {_GUIDE}")
        raise ValidationException(
            f"Advanced tier parameters support a maximum parameter value of {limit} characters. "
            f"For more information, see {_GUIDE}")
    call["tier"] = effective  # Intelligent-Tiering stores the tier it chose
    return _original(*bound.args, **bound.kwargs)


def is_enabled() -> bool:
    return _original is not None


def enable() -> None:
    """Install the limits into moto, in this process (idempotent)."""
    global _original
    with _lock:
        if _original is None:
            _original = SSMBackend.put_parameter
            SSMBackend.put_parameter = _put_parameter  # type: ignore[method-assign]


def disable() -> None:
    """Give moto back its own put_parameter (idempotent)."""
    global _original
    with _lock:
        if _original is not None:
            SSMBackend.put_parameter = _original  # type: ignore[method-assign]
            _original = None


@contextlib.contextmanager
def strict_ssm() -> Iterator[None]:
    """The limits inside the block; leaves things as they were on exit."""
    was_enabled = is_enabled()
    enable()
    try:
        yield
    finally:
        if not was_enabled:
            disable()
