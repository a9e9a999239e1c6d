"""Benchmark: cold import time of the Lambda handlers, as `sam build` packages them.

Each run is a fresh python3.13 process (the runtime's version) whose import path
(PYTHONPATH) is the built function directory, the built layer's python/ directory
and, after them, a stand-in for the runtime's own boto3 (see below), nothing else
(-P -s -S: not the working directory, no site-packages), with the Lambda environment variables a deployed function has.
It measures the artifacts as shipped, with the .pyc the build compiled, and
writes no bytecode (-B), as on Lambda, where /var/task and /opt are read-only:
whatever ships without valid .pyc is compiled at every cold start. The "compiled"
column counts the function's and the layer's modules that were compiled from
source all the same (it should be 0). The time is measured inside the child
around `importlib.import_module`; the process column adds interpreter start-up.

    make bench-import                    # sam build, then this with --without-bytecode
    .venv/bin/python bench/cold_import.py [--runs 10] [--without-bytecode] [--top 8]

--without-bytecode also measures a copy of the artifacts with every __pycache__
removed: what the same code costs when nothing is precompiled. --top lists the
packages that take the most import time (-X importtime, one run).

The layer has no boto3, botocore, s3transfer, jmespath, python-dateutil or six:
the python3.13 runtime provides them (the X-Ray SDK imports botocore). The
stand-in for the runtime's copies is the project's .venv's, copied and compiled
for python3.13 as the runtime's are, and put on the import path after the layer, where
the runtime's are. The output also gives each artifact's size, unzipped and zipped
(deflate, as `sam package` zips).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HANDLERS = {  # module: the function whose artifact holds it
    "ecr_mirror.handlers.scheduler": "SchedulerFunction",
    "ecr_mirror.handlers.worker": "WorkerFunction",
    "ecr_mirror.handlers.copy_one": "WorkerFunction",
}
ARTIFACTS = ("SchedulerFunction", "WorkerFunction", "DependenciesLayer")
# What the python3.13 runtime provides, and the layer leaves out.
RUNTIME_PACKAGES = ["boto3", "botocore", "s3transfer", "dateutil", "jmespath", "six.py"]

CHILD = """
import importlib, importlib.machinery, json, sys, time
paths = json.loads(sys.argv[2])  # PYTHONPATH, as a list
# Count the function's and the layer's modules compiled from source: none, when the
# shipped .pyc are valid for this Python (SourceLoader calls this only without one).
compiled = []
to_code = importlib.machinery.SourceFileLoader.source_to_code
def source_to_code(self, data, path, *args, **kwargs):
    if path.startswith(tuple(paths[:2])):
        compiled.append(path)
    return to_code(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = source_to_code
start = time.perf_counter()
importlib.import_module(sys.argv[1])
elapsed = time.perf_counter() - start
print(json.dumps({"import_s": elapsed, "modules": len(sys.modules), "compiled": len(compiled)}))
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


def runtime_stand_in(workdir: Path, python: str) -> Path:
    """boto3 and its dependencies from the project's venv, compiled for python3.13."""
    venvs = sorted(glob.glob(str(REPO / ".venv" / "lib" / "python3.*" / "site-packages")))
    if not venvs:
        sys.exit("no .venv to take the runtime's boto3 from: run make test")
    runtime = workdir / "runtime"
    runtime.mkdir()
    for name in RUNTIME_PACKAGES:
        source = Path(venvs[-1]) / name
        if not source.exists():
            sys.exit(f"{source} is missing: the .venv has no {name}")
        if source.is_dir():
            shutil.copytree(source, runtime / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, runtime / name)
    subprocess.run([python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
                    "unchecked-hash", str(runtime)], check=True, capture_output=True)
    return runtime


def child_env(env: dict[str, str], paths: list[str]) -> dict[str, str]:
    """The function's environment, with ``paths`` as the import path and nothing else."""
    return {**{k: v for k, v in env.items() if not k.startswith("PYTHON")},
            "PYTHONPATH": os.pathsep.join(paths)}


def measure(python: str, module: str, paths: list[str], env: dict[str, str],
            runs: int) -> dict[str, float]:
    imports, processes, modules, compiled = [], [], 0, 0
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run([python, "-P", "-s", "-S", "-B", "-c", CHILD, module, json.dumps(paths)],
                                env=child_env(env, paths), cwd=paths[0], capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"{module} does not import:\n{result.stderr}")
        answer = json.loads(result.stdout.strip().splitlines()[-1])
        imports.append(answer["import_s"] * 1000)
        processes.append(wall * 1000)
        modules, compiled = answer["modules"], answer["compiled"]
    return {"import_median_ms": statistics.median(imports), "import_max_ms": max(imports),
            "process_median_ms": statistics.median(processes), "modules": modules,
            "compiled": compiled}


def top_packages(python: str, module: str, paths: list[str], env: dict[str, str],
                 count: int) -> list[tuple[str, float]]:
    """Self import time per top-level package, from one run with -X importtime."""
    result = subprocess.run([python, "-P", "-s", "-S", "-B", "-X", "importtime", "-c", CHILD, module,
                             json.dumps(paths)], env=child_env(env, paths), cwd=paths[0], capture_output=True,
                            text=True, timeout=120)
    totals: dict[str, float] = defaultdict(float)
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:"):].split("|")
        totals[name.strip().split(".")[0]] += int(self_us) / 1000
    return sorted(totals.items(), key=lambda item: -item[1])[:count]


def without_bytecode(build: Path, workdir: Path) -> Path:
    """A copy of the build with every __pycache__ removed."""
    copy = workdir / "without-bytecode"
    for name in ARTIFACTS:
        shutil.copytree(build / name, copy / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def zipped(path: Path, workdir: Path) -> int:
    """The size of path's contents zipped with deflate, as `sam package` uploads them."""
    archive = workdir / f"{path.name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(path.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(path))
    size = archive.stat().st_size
    archive.unlink()
    return size


def mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"


def pyc_count(path: Path) -> tuple[int, int]:
    return (sum(1 for _ in path.rglob("*.py")),
            sum(1 for _ in path.rglob("__pycache__/*.cpython-313.pyc")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=REPO / ".aws-sam" / "build")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--without-bytecode", action="store_true",
                        help="also measure a copy of the artifacts without any .pyc")
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
    print(f"python {version} ({python}), {args.runs} runs per module, build {build}")

    results, sizes = [], {}
    with tempfile.TemporaryDirectory(prefix="cold-import-") as tmp:
        workdir = Path(tmp)
        for name in ARTIFACTS:
            sources, pycs = pyc_count(build / name)
            sizes[name] = {"unzipped": du(build / name), "zipped": zipped(build / name, workdir),
                           "py": sources, "pyc_313": pycs}
            print(f"{name:18} {mib(sizes[name]['unzipped']):>10} unzipped "
                  f"{mib(sizes[name]['zipped']):>10} zipped   {sources} .py, {pycs} cpython-313 .pyc")
        layer = build / "DependenciesLayer" / "python"
        shadowing = [name for name in RUNTIME_PACKAGES if (layer / name).exists()]
        if shadowing:
            print(f"note: the layer has its own {', '.join(shadowing)}, shadowing the runtime's")
        runtime = runtime_stand_in(workdir, python)
        print(f"runtime stand-in after the layer: {', '.join(RUNTIME_PACKAGES)} from the .venv, "
              f"compiled for python {version}")
        variants = [("shipped", build)]
        if args.without_bytecode:
            variants.append(("no .pyc", without_bytecode(build, workdir)))
        for variant, root in variants:
            for module, function in HANDLERS.items():
                paths = [str(root / function), str(root / "DependenciesLayer" / "python"),
                         str(runtime)]
                env = lambda_env(root / function, function)
                row = {"module": module, "variant": variant,
                       **measure(python, module, paths, env, args.runs)}
                if args.top and variant == "shipped":
                    row["top"] = top_packages(python, module, paths, env, args.top)
                results.append(row)

    print()
    header = f"{'module':34} {'variant':10} {'import median':>14} {'import max':>11} " \
             f"{'process median':>15} {'modules':>8} {'compiled':>9}"
    print(header)
    print("-" * len(header))
    for row in results:
        print(f"{row['module']:34} {row['variant']:10} {row['import_median_ms']:11.0f} ms "
              f"{row['import_max_ms']:8.0f} ms {row['process_median_ms']:12.0f} ms "
              f"{row['modules']:8d} {row['compiled']:9d}")
    for row in results:
        if row.get("top"):
            listed = ", ".join(f"{name} {ms:.0f}" for name, ms in row["top"])
            print(f"\n{row['module']}: self import time by package (ms, one run): {listed}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"python": version, "runs": args.runs, "sizes": sizes,
                                         "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
