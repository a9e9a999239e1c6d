"""Run a command and write its wall time, CPU and peak RSS as JSON (for the benchmarks).

    python -S bench/rusage.py OUT.json COMMAND [ARG...]

Why a launcher: on Linux a child's peak RSS (ru_maxrss) starts at its parent's
RSS at fork time and survives exec, so a command started by the benchmark's
own, big process would report that process's memory as its own. This small
process forks the command instead. Standard library only; exits with the
command's status.
"""

import json
import os
import subprocess
import sys
import time


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[2:]
    started = time.monotonic()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        json.dump({"exit": code, "wall_s": time.monotonic() - started,
                   "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
                   "sys_s": usage.ru_stime, "max_rss_mib": usage.ru_maxrss / 1024,
                   "minor_faults": usage.ru_minflt}, f)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
