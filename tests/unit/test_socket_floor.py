"""bench/socket_floor.py moves exactly the bytes it reports, whole parts or not."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "socket_floor.py"


@pytest.mark.parametrize("size", [1, 10 * 1024 * 1024, 25 * 1024 * 1024 + 7])  # a short last part too
def test_receives_and_sends_the_size_given(size):
    done = subprocess.run([sys.executable, "-S", str(SCRIPT), str(size)], capture_output=True,
                          text=True, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert result["received"] == size
    assert result["sent"] == size * 4 // 3
    assert result["recv_s"] >= 0 and result["send_s"] >= 0
