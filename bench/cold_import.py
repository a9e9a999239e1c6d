"""Benchmark: cold import time of the Lambda handlers, as `sam build` packages them.

Each run is a fresh python3.13 process (the runtime's version) whose sys.path is
the built function directory and the built layer's python/ directory, nothing
else (-I -S: no site-packages), with the Lambda environment variables a deployed
function has. It writes no bytecode (-B), as on Lambda, where /var/task and /opt
are read-only: whatever ships without .pyc files is compiled at every cold start.
The time is measured inside the child around `importlib.import_module`; the
process column adds interpreter start-up.

    make bench-import                    # sam build, then this
    .venv/bin/python bench/cold_import.py [--runs 10] [--precompiled] [--top 8]

--precompiled also measures a copy of the artifacts compiled to .pyc by
python3.13 (unchecked-hash, so zip timestamps do not invalidate them): what
shipping bytecode would save. --top lists the packages that take the most
import time (-X importtime, one run).

If the layer has no boto3 (the Lambda runtime provides one), boto3 and its
dependencies are taken from the project's .venv, and the output says so.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HANDLERS = {  # module: the function whose artifact holds it
    "ecr_mirror.handlers.scheduler": "SchedulerFunction",
    "ecr_mirror.handlers.worker": "WorkerFunction",
    "ecr_mirror.handlers.copy_one": "WorkerFunction",
}
RUNTIME_PACKAGES = ["boto3", "botocore", "s3transfer", "dateutil", "jmespath", "six.py"]

CHILD = """
import importlib, json, sys, time
sys.path[:0] = json.loads(sys.argv[2])
start = time.perf_counter()
importlib.import_module(sys.argv[1])
elapsed = time.perf_counter() - start
print(json.dumps({"import_s": elapsed, "modules": len(sys.modules)}))
"""


def python313() -> str:
    candidates = [os.environ.get("PY313_BIN", "")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", "3.13*", "bin")), reverse=True)
    found = shutil.which("python3.13")
    candidates.append(os.path.dirname(found) if found else "")
    for directory in filter(None, candidates):
        exe = os.path.join(directory, "python3.13")
        if os.access(exe, os.X_OK):
            return exe
    sys.exit("no python3.13 found (PY313_BIN, ~/.pyenv/versions/3.13*, PATH): pyenv install 3.13")


def lambda_env(function_dir: Path, function: str) -> dict[str, str]:
    """What Lambda and template.yaml set, so Powertools behaves as deployed (Tracer on)."""
    return {
        "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": f"ecr-mirror-{function}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1769", "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "LAMBDA_TASK_ROOT": str(function_dir), "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
        "ECR_MIRROR_CONFIG_PARAMETER": "/ecr-mirror/config", "ECR_MIRROR_PREFIX": "mirror",
        "ECR_MIRROR_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/ecr-mirror-q",
        "ECR_MIRROR_SCAN_ON_PUSH": "true", "ECR_MIRROR_TAG_MUTABILITY": "MUTABLE",
        "ECR_MIRROR_KMS_KEY": "", "ECR_MIRROR_CONCURRENCY": "4",
        "ECR_MIRROR_STOP_MARGIN_SECONDS": "60",
        "POWERTOOLS_SERVICE_NAME": "ecr-mirror", "POWERTOOLS_METRICS_NAMESPACE": "EcrMirror",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def runtime_fallback(layer: Path, workdir: Path) -> Path | None:
    """boto3 and friends from the project's venv, when the layer has none."""
    if (layer / "boto3").is_dir():
        return None
    venvs = sorted(glob.glob(str(REPO / ".venv" / "lib" / "python3.*" / "site-packages")))
    if not venvs:
        sys.exit("the layer has no boto3 and there is no .venv to borrow it from: run make test")
    runtime = workdir / "runtime-boto3"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        source = Path(venvs[-1]) / name
        if source.exists() and not (layer / name).exists():
            (runtime / name).symlink_to(source)
    return runtime


def measure(python: str, module: str, paths: list[str], env: dict[str, str],
            runs: int) -> dict[str, float]:
    imports, processes, modules = [], [], 0
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run([python, "-I", "-S", "-B", "-c", CHILD, module, json.dumps(paths)],
                                env=env, cwd=paths[0], capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"{module} does not import:\n{result.stderr}")
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        imports.append(answer["import_s"] * 1000)
        processes.append(wall * 1000)
        modules = answer["modules"]
    return {"import_median_ms": statistics.median(imports), "import_max_ms": max(imports),
            "process_median_ms": statistics.median(processes), "modules": modules}


def top_packages(python: str, module: str, paths: list[str], env: dict[str, str],
                 count: int) -> list[tuple[str, float]]:
    """Self import time per top-level package, from one run with -X importtime."""
    result = subprocess.run([python, "-I", "-S", "-B", "-X", "importtime", "-c", CHILD, module,
                             json.dumps(paths)], env=env, cwd=paths[0], capture_output=True,
                            text=True, timeout=120)
    totals: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:"):].split("|")
        totals[name.strip().split(".")[0]] += int(self_us) / 1000
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def precompile(build: Path, workdir: Path, python: str) -> Path:
    """A copy of the build with every .py compiled to .pyc by python3.13."""
    copy = workdir / "precompiled"
    for name in ("SchedulerFunction", "WorkerFunction", "DependenciesLayer"):
        shutil.copytree(build / name, copy / name, symlinks=True)
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                    "unchecked-hash", str(copy)], check=True, capture_output=True)
    return copy


def du(path: Path) -> str:
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return f"{size / (1 << 20):.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=REPO / ".aws-sam" / "build")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--precompiled", action="store_true",
                        help="also measure the artifacts compiled to .pyc")
    parser.add_argument("--top", type=int, default=8, help="packages to list by import time (0: none)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    build = args.build_dir.resolve()
    if not (build / "DependenciesLayer" / "python").is_dir():
        print(f"no sam build in {build}: run `make sam-build` (or `make bench-import`) first",
              file=sys.stderr)
        return 2
    python = python313()
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    cached = [str(p.relative_to(build)) for p in build.rglob("__pycache__")][:3]
    print(f"python {version} ({python}), {args.runs} runs per module, build {build}")
    print(f"artifacts: SchedulerFunction {du(build / 'SchedulerFunction')}, "
          f"WorkerFunction {du(build / 'WorkerFunction')}, layer {du(build / 'DependenciesLayer')}"
          + (f"; bytecode already present in {cached}" if cached else "; no bytecode shipped"))

    results = []
    with tempfile.TemporaryDirectory(prefix="cold-import-") as tmp:
        workdir = Path(tmp)
        fallback = runtime_fallback(build / "DependenciesLayer" / "python", workdir)
        if fallback:
            print(f"note: the layer has no boto3; boto3/botocore come from the project's .venv "
                  f"({', '.join(sorted(os.listdir(fallback)))}), standing in for the runtime's")
        variants = [("source", build)]
        if args.precompiled:
            variants.append(("precompiled", precompile(build, workdir, python)))
        for variant, root in variants:
            for module, function in HANDLERS.items():
                paths = [str(root / function), str(root / "DependenciesLayer" / "python")]
                if fallback:
                    paths.append(str(fallback))
                env = lambda_env(root / function, function)
                row = {"module": module, "variant": variant,
                       **measure(python, module, paths, env, args.runs)}
                if args.top and variant == "source":
                    row["top"] = top_packages(python, module, paths, env, args.top)
                results.append(row)

    print()
    header = f"{'module':34} {'variant':12} {'import median':>14} {'import max':>11} " \
             f"{'process median':>15} {'modules':>8}"
    print(header)
    print("-" * len(header))
    for row in results:
        print(f"{row['module']:34} {row['variant']:12} {row['import_median_ms']:11.0f} ms "
              f"{row['import_max_ms']:8.0f} ms {row['process_median_ms']:12.0f} ms "
              f"{row['modules']:8d}")
    for row in results:
        if row.get("top"):
            listed = ", ".join(f"{name} {ms:.0f}" for name, ms in row["top"])
            print(f"\n{row['module']}: self import time by package (ms, one run): {listed}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"python": version, "runs": args.runs,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
