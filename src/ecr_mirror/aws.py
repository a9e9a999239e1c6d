"""Every boto3 client the code uses, made here: one session, one region, one config.

The region is the caller's (`--region`), else AWS_REGION (what Lambda sets),
else AWS_DEFAULT_REGION, else the profile's. Retries are botocore's standard
mode (throttling and 5xx answers; PutImage has a 10 TPS default), except
that an endpoint that cannot be reached at all (no such name, connection
refused, no connection within `CONNECT_TIMEOUT`) is tried twice only, so a wrong
region or endpoint fails in seconds rather than after ten backed-off tries.
ECR's connection pool is sized from the copy's concurrency.

A client is made once per process and shared by every thread (boto3 clients
are thread-safe), under a lock so that threads starting together do not each
build one. It is keyed by the AWS_* environment too, so a process whose
environment changes (the tests, pointing at an emulator) gets a fresh client.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .errors import SetupError, UsageError
from .settings import DEFAULT_CONCURRENCY

#: The services ecr-mirror calls.
SERVICES = ("ecr", "sqs", "ssm", "secretsmanager", "dynamodb", "events")

_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Any] = {}


def error_code(exc: Any) -> str:
    """The AWS error code of a botocore `ClientError` ("AccessDenied"...)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: Any) -> str:
    """The AWS error message of a botocore `ClientError`."""
    return str(exc.response.get("Error", {}).get("Message", ""))


#: Error codes of a Secrets Manager or SSM read worth trying again later
#: (Secrets Manager says InternalServiceError, SSM InternalServerError).
TEMPORARY_READ_CODES = frozenset({
    "ThrottlingException", "InternalServerError", "InternalServiceError", "ServiceUnavailable",
    "TooManyRequestsException", "RequestTimeout"})
_sessions: dict[tuple[tuple[str, str], ...], Any] = {}


#: Seconds to wait for a TCP connection to an AWS endpoint (in-region: milliseconds).
CONNECT_TIMEOUT = 5
#: Tries of an AWS endpoint that cannot be reached at all.
UNREACHABLE_ATTEMPTS = 2


def region(explicit: str | None = None) -> str | None:
    """The region every client uses (None: boto3's profile chain decides)."""
    return explicit or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def pool_size(concurrency: int) -> int:
    """ECR connections: a blob upload and a lookup per thread, and some spare."""
    return max(10, concurrency * 2 + 2)


def client(service: str, region_name: str | None = None, *,
           concurrency: int = DEFAULT_CONCURRENCY) -> Any:
    """The process's `service` client for `region_name` (see `region`).

    `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` point it at an emulator.
    """
    from botocore.config import Config
    from botocore.exceptions import InvalidRegionError, NoRegionError, ProfileNotFound

    chosen = region(region_name)
    pool = pool_size(concurrency) if service == "ecr" else 10
    environment = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    key = (service, chosen, pool, environment)
    with _lock:
        if key in _clients:
            return _clients[key]
        config = Config(retries={"mode": "standard", "max_attempts": 10},
                        max_pool_connections=pool, connect_timeout=CONNECT_TIMEOUT,
                        read_timeout=120, user_agent_extra="ecr-mirror/0.1")
        try:
            made = _session(environment).client(service, region_name=chosen, config=config)
            made.meta.events.register_first(
                f"needs-retry.{made.meta.service_model.service_id.hyphenize()}",
                _give_up_when_unreachable)
        except NoRegionError:
            raise UsageError("no AWS region: pass --region (e.g. --region eu-west-1), or set "
                             "AWS_REGION or a region in your AWS profile") from None
        except (InvalidRegionError, ProfileNotFound) as exc:
            raise UsageError(f"{str(exc).rstrip('.')}; pass a region such as --region eu-west-1"
                             ) from None
        _clients[key] = made
        return made


def _session(environment: tuple[tuple[str, str], ...]) -> Any:
    """One boto3 session per process (per AWS_* environment); call with the lock held."""
    if environment not in _sessions:
        import boto3

        _sessions[environment] = boto3.session.Session()
    return _sessions[environment]


def _give_up_when_unreachable(attempts: int, caught_exception: BaseException | None = None,
                              **_: Any) -> None:
    """botocore's `needs-retry` hook, run before its retry handler: an endpoint that
    cannot be reached is given up after `UNREACHABLE_ATTEMPTS` (its error re-raised)."""
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    if (isinstance(caught_exception, (EndpointConnectionError, ConnectTimeoutError))
            and attempts >= UNREACHABLE_ATTEMPTS):
        raise caught_exception


def explain(exc: Exception, service: str) -> str:
    """A botocore error in words a user can act on (`raise_setup_error` first)."""
    from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        variable = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
        return f"{exc}; check the region, and {variable} if you set it"
    return str(exc)


def raise_setup_error(exc: Exception) -> None:
    """Raise a `SetupError` when `exc` says the AWS set-up is missing (no credentials)."""
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        raise SetupError(f"no AWS credentials ({exc}): set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run `aws configure`") from None


def read(call: Callable[[], Any], *, what: str, service: str, error: Callable[..., Exception],
         hints: Mapping[str, str], other: str) -> Any:
    """`call()`: one read of SSM or Secrets Manager. A refusal is `error` (given
    `temporary=`) saying `cannot read <what>: <code>: <AWS message>; <hint>`, the hint
    the caller's for that code (else `other`); an endpoint that cannot be reached is
    a temporary `error`, missing credentials a SetupError. Never shows what was read."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call()
    except ClientError as exc:
        code = error_code(exc) or "ClientError"
        raise error(f"cannot read {what}: {code}: {error_message(exc)}; {hints.get(code, other)}",
                    temporary=code in TEMPORARY_READ_CODES) from None
    except BotoCoreError as exc:
        raise_setup_error(exc)
        raise error(f"cannot read {what}: {explain(exc, service)}", temporary=True) from None


def secret_string(secrets: Any, secret_id: str, *, what: str, store: str, error: Callable[..., Exception],
                  hints: Mapping[str, str], other: str) -> str:
    """The SecretString of `secret_id` through the `secrets` client (failures as `read`
    says); a secret without one is `error`, asking for `store` as text."""
    answer = read(lambda: secrets.get_secret_value(SecretId=secret_id), what=what,
                  service="secrets-manager", error=error, hints=hints, other=other)
    if "SecretString" not in answer:
        raise error(f"secret {secret_id} has no SecretString; store {store} as text")
    return str(answer["SecretString"])
