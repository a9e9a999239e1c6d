"""`ecr-mirror`: the command line over the same engine the Lambda functions use.

Exit status: 0 copied or unchanged, 1 failed, deferred or superseded, 2 the user's
input or set-up is wrong (usage, config, region, AWS credentials, a platform the
image lacks, a cosign key that cannot be read), said in one line on stderr,
3 the signature gate rejected an image (nothing of it was tagged; trying again
will not help until it is signed), when nothing else went wrong.
`superseded` (upstream's tag moved to another image during the copy, so the
ECR tag was left alone rather than moved to the older image) exits 1: the tag
does not hold what the source names now; run the command again to copy it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from dataclasses import replace
from typing import NoReturn

from . import __version__
from .copy import COPIED, SUPERSEDED, UNCHANGED, CopyReport, Progress
from .copy.options import ReferrerPolicy
from .copy.report import REJECTED
from .errors import CosignKeyError, SetupError, UsageError
from .events import announce
from .keys import load_keys
from .memory import limit_malloc_arenas
from .mirror import Mirror, parse_platforms
from .settings import DEFAULT_CONCURRENCY, DEFAULT_UNTAGGED_EXPIRY_DAYS, MirrorSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """A usage problem is one line, `ecr-mirror: error: ...`, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"ecr-mirror: error: {' '.join(message.split())} (see {self.prog} --help)",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ecr-mirror",
        description="Mirror container images from Docker Hub or any v2 registry into Amazon ECR.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    copy = sub.add_parser(
        "copy", help="copy one image into ECR",
        description="Copy one image into ECR. Unchanged images cost no pull; only missing "
                    "layers are uploaded.",
        epilog="TARGET is an ECR repository with an optional :tag (default: the source's tag), "
               "or ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo[:tag]. AWS credentials, region and "
               "endpoint (AWS_ENDPOINT_URL_ECR) come from boto3's usual chain. Source "
               "credentials come from ECR_MIRROR_SOURCE_USERNAME/ECR_MIRROR_SOURCE_PASSWORD "
               "(for Docker Hub, or the registry ECR_MIRROR_SOURCE_REGISTRY names) or the docker "
               "config file's auths.")
    copy.add_argument("source", metavar="SOURCE", help="image reference, e.g. nginx:stable")
    copy.add_argument("target", metavar="TARGET", help="ECR repository[:tag], e.g. mirror/nginx")
    copy.add_argument("--platform", action="append", default=[], metavar="OS/ARCH[/VARIANT]",
                      help="copy only this platform (repeatable); writes a new index")
    copy.add_argument("--concurrency", type=_positive, default=DEFAULT_CONCURRENCY, metavar="N",
                      help="blobs copied in parallel (default %(default)s)")
    copy.add_argument("--insecure", action="store_true",
                      help="the source registry speaks plain HTTP or unverified TLS")
    _registry_options(copy)
    _supply_chain_options(copy)
    _event_options(copy)
    copy.add_argument("--json", action="store_true",
                      help="print the report as one JSON object on stdout, and nothing else")
    copy.add_argument("--region",
                      help="AWS region of every AWS call (default: AWS_REGION, AWS_DEFAULT_REGION, the profile)")
    copy.add_argument("--immutable-tags", action="store_true",
                      help="create missing repositories with immutable tags")
    copy.add_argument("--no-scan-on-push", action="store_true",
                      help="create missing repositories without scan on push")
    copy.add_argument("--kms-key", metavar="KEY",
                      help="create missing repositories encrypted with this KMS key (default AES256)")
    _expiry_option(copy)
    copy.add_argument("-v", "--verbose", action="store_true", help="log to stderr")

    sync = sub.add_parser(
        "sync", help="mirror everything a config file lists",
        description="Plan from a mirror config (YAML) and copy the images that changed. "
                    "Unchanged images cost no pull.",
        epilog="See examples/mirror-config.yaml for the format.")
    sync.add_argument("--config", required=True, metavar="FILE", help="the mirror config (YAML)")
    sync.add_argument("--dry-run", action="store_true", help="show the plan, copy nothing")
    sync.add_argument("--json", action="store_true",
                      help="print the result as one JSON object on stdout, and nothing else")
    sync.add_argument("--concurrency", type=_positive, default=DEFAULT_CONCURRENCY, metavar="N",
                      help="blobs copied in parallel per image (default %(default)s)")
    sync.add_argument("--region",
                      help="AWS region of every AWS call (default: AWS_REGION, AWS_DEFAULT_REGION, the profile)")
    sync.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    _registry_options(sync)
    _supply_chain_options(sync, " (for every image, instead of the config's)")
    _event_options(sync)
    _expiry_option(sync)
    return parser


def _expiry_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--untagged-expiry-days", type=_days, default=DEFAULT_UNTAGGED_EXPIRY_DAYS,
                        metavar="N", help="repositories created get a lifecycle policy expiring "
                                          "untagged images after N days (0: none; default %(default)s)")


def _event_options(parser: argparse.ArgumentParser) -> None:
    """EventBridge events, as the worker puts them (events.py)."""
    parser.add_argument("--events", action="store_true",
                        help='put "Image Mirrored" / "Image Failed" events on the default '
                             "EventBridge bus")
    parser.add_argument("--event-bus", metavar="BUS",
                        help="put them on this bus (a name or an event-bus ARN; implies --events)")


def _supply_chain_options(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """What travels with an image and the signature gate (the config's referrers and verify)."""
    parser.add_argument("--referrers", action="store_true",
                        help="copy the referrers too: signatures, attestations, SBOMs" + scope)
    parser.add_argument("--referrer-type", action="append", default=[], metavar="TYPE",
                        type=_nonempty, help="copy only referrers of this artifactType "
                                             "(repeatable; implies --referrers)" + scope)
    parser.add_argument("--cosign-key", action="append", default=[], metavar="KEY",
                        help="copy only images a cosign signature over their digest verifies "
                             "with this public key: a file, ssm:/NAME or secretsmanager:ID "
                             "(repeatable: any one may verify)" + scope)


def _registry_options(parser: argparse.ArgumentParser) -> None:
    """Where and how to reach source registries, as ECR_MIRROR_REGISTRY_ENDPOINTS and
    ECR_MIRROR_INSECURE_REGISTRIES say for the functions (both honoured here too)."""
    parser.add_argument("--registry-endpoint", action="append", default=[], metavar="HOST=URL",
                        help="reach registry HOST at URL instead, e.g. docker.io=http://127.0.0.1:5000 "
                             "(repeatable; adds to ECR_MIRROR_REGISTRY_ENDPOINTS)")
    parser.add_argument("--insecure-registry", action="append", default=[], metavar="HOST",
                        help="registry HOST speaks plain HTTP or unverified TLS (repeatable; adds "
                             "to ECR_MIRROR_INSECURE_REGISTRIES)")


def _nonempty(text: str) -> str:
    if not text.strip() or text != text.strip():
        raise argparse.ArgumentTypeError(f"must be a media type such as application/spdx+json, got {text!r}")
    return text


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a number of days, got {text!r}")
    return days


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


class BarProgress(Progress):
    """One tqdm bar per blob in flight, on stderr."""

    def __init__(self) -> None:
        from tqdm import tqdm  # only the CLI on a terminal needs it

        self._tqdm = tqdm
        self._bars: dict = {}
        self._lock = threading.Lock()

    def blob_started(self, digest: str, size: int) -> None:
        with self._lock:
            old = self._bars.pop(digest, None)
            if old:
                old.close()
            self._bars[digest] = self._tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                            desc=digest[7:19], leave=False, file=sys.stderr)

    def blob_advanced(self, digest: str, n: int) -> None:
        with self._lock:
            if digest in self._bars:
                self._bars[digest].update(n)

    def blob_finished(self, digest: str) -> None:
        with self._lock:
            bar = self._bars.pop(digest, None)
            if bar:
                bar.close()


class WaitAnnouncer(logging.Handler):
    """Without -v, on a terminal: a retry that waits longer than `LONG_WAIT` seconds
    is announced in one line (written above the progress bars, not through them)."""

    LONG_WAIT = 5.0

    def emit(self, record: logging.LogRecord) -> None:
        wait = getattr(record, "wait", 0.0)
        if wait > self.LONG_WAIT:
            from tqdm import tqdm

            tqdm.write(f"ecr-mirror: waiting {wait:.0f} s before retrying: "
                       f"{getattr(record, 'error', '')}", file=sys.stderr)


def _only_retries(record: logging.LogRecord) -> bool:
    return record.getMessage().startswith("Retry needed")


def _set_up_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # -v: botocore's retries of AWS calls, one line each; its other debug lines stay out
    aws_retries = logging.getLogger("botocore.retries.standard")
    aws_retries.setLevel(logging.DEBUG if verbose else logging.NOTSET)
    if _only_retries not in aws_retries.filters:
        aws_retries.addFilter(_only_retries)
    if not verbose and sys.stderr.isatty():
        retries = logging.getLogger("ecr_mirror.registry.retry")
        retries.setLevel(logging.INFO)
        retries.propagate = False
        retries.addHandler(WaitAnnouncer())


def _flag_options(args: argparse.Namespace) -> tuple[ReferrerPolicy | None, tuple[str, ...]] | None:
    """(referrer policy, key specs) the flags ask for; None when they say nothing."""
    if not (args.referrers or args.referrer_type or args.cosign_key):
        return None
    referrers = ReferrerPolicy(tuple(args.referrer_type))  # with a gate: its signatures travel
    return referrers, tuple(args.cosign_key)


def run_copy(args: argparse.Namespace) -> int:
    settings = MirrorSettings.from_args(args)
    platforms = parse_platforms(args.platform)
    referrers, specs = _flag_options(args) or (None, ())
    verify = load_keys(specs, region=settings.region, files=True) if specs else None
    progress = BarProgress() if (not args.json and sys.stderr.isatty()) else None
    with Mirror(settings) as mirror:
        report = mirror.copy(args.source, args.target, platforms=platforms, insecure=args.insecure,
                             progress=progress, referrers=referrers, verify=verify)
    _announce(report, settings)
    if _usage_error(report):  # e.g. no credentials, a platform the image lacks
        if args.json:
            _print(report, True)
        return EXIT_USAGE
    _print(report, args.json)
    if report.status == REJECTED:
        return EXIT_REJECTED
    return EXIT_OK if report.status in (COPIED, UNCHANGED) else EXIT_FAILED


#: A report failed by one of these: the user's input or set-up is wrong (exit 2).
_USAGE_ERRORS = {UsageError.__name__, SetupError.__name__}


def _announce(report: CopyReport, settings: MirrorSettings) -> None:
    """The report's event (--events): every failure is final here, nobody tries again;
    but the user's own mistake (no credentials, a bad platform) is their one line only."""
    if (report.error or {}).get("type") not in _USAGE_ERRORS:
        announce([(report, True)], settings.event_bus, settings.region)


def _usage_error(report: CopyReport) -> bool:
    """Whether the copy failed on the user's input or set-up; if so, say so on stderr."""
    if not report.error or report.error.get("type") not in _USAGE_ERRORS:
        return False
    print(f"ecr-mirror: error: {report.error['message']}", file=sys.stderr)
    return True


def run_sync(args: argparse.Namespace) -> int:
    from .sync import build_plan, load_config
    from .sync.prune import prune, wanted

    try:
        with open(args.config, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise UsageError(f"cannot read the config {args.config}: {exc.strerror}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{args.config} is not UTF-8 text (byte {exc.start}); save it as "
                         "UTF-8") from None
    config = load_config(text, origin=args.config)
    flags = _flag_options(args)
    if flags:  # the flags replace what each entry says, before planning (it reads them)
        config.images = [replace(e, referrers=flags[0], verify=flags[1]) for e in config.images]
    settings = MirrorSettings.from_args(args).merged_with(config)
    # Every key read before anything is planned or copied: a key that cannot be read stops all.
    gates = {e.verify: load_keys(e.verify, region=settings.region, files=flags is not None)
             for e in config.images if e.verify}
    with Mirror(settings) as mirror:  # its connections closed once the sync is done
        plan = build_plan(config, mirror)
        reports = []
        for job in [] if args.dry_run else plan.jobs:
            reports.append(mirror.copy(
                job.source, job.target, platforms=parse_platforms(job.platforms),
                progress=None if args.json or not sys.stderr.isatty() else BarProgress(),
                referrers=job.referrers, verify=gates.get(job.verify)))
            _announce(reports[-1], settings)  # as each lands
        if wanted(config) and not mirror.ownership.recorded:
            print("note: prune: true untags only the tags ecr-mirror recorded as its own, in the table "
                  "ECR_MIRROR_LEASE_TABLE names; none is set, so nothing was pruned", file=sys.stderr)
        pruning = prune(config, plan, mirror, dry_run=args.dry_run)
    plan.errors += pruning.errors  # said, and counted, as planning errors are
    misused = [r for r in reports if _usage_error(r)]
    rejected = sum(r.status == REJECTED for r in reports)
    failed = [r for r in reports if not r.ok and r.status != REJECTED]
    superseded = sum(r.status == SUPERSEDED for r in reports)
    summary = {**plan.summary(), "copied": sum(r.status == COPIED for r in reports),
               "failed": len(failed), "superseded": superseded, "rejected": rejected,
               "dryRun": args.dry_run}
    if args.json:
        emit_json("syncOutput", {"summary": summary, "plan": plan.as_dict(),
                                 "reports": [r.as_dict() for r in reports],
                                 **(pruning.as_dict() if wanted(config) else {})})
    else:
        for error in plan.errors:
            print(f"error: {error['entry']}: {error['message']}")
        for item in plan.unchanged:
            print(f"unchanged {item['source']} -> {item['target']}")
        for item in plan.pinned:
            print(f"pinned {item['source']} -> {item['target']}")
        for job in plan.jobs if args.dry_run else ():
            print(f"would copy {job.source} -> {job.target}")
        for report in reports:
            if report not in misused:
                print(report.summary())
        for item in pruning.pruned:
            print(f"{'would untag' if args.dry_run else 'untagged'} {item['target']} ({item['digest']})")
        for item in pruning.later:
            print(f"left for the next run: untag {item['target']}")
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    if misused:
        return EXIT_USAGE
    if failed or superseded or plan.errors:
        return EXIT_FAILED
    return EXIT_REJECTED if rejected else EXIT_OK


def _print(report: CopyReport, as_json: bool) -> None:
    if as_json:
        emit_json("copyReport", report.as_dict())
    else:
        print(report.summary())


def emit_json(kind: str, data: dict) -> None:
    """One JSON object on one line of stdout: a `kind` of docs/schema/output.schema.json."""
    json.dump(data, sys.stdout)
    sys.stdout.write("\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    limit_malloc_arenas()
    _set_up_logging(args.verbose)
    try:
        return run_sync(args) if args.command == "sync" else run_copy(args)
    except (UsageError, CosignKeyError) as exc:
        print(f"ecr-mirror: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
