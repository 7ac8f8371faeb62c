"""`python -m bench load` leaves no process behind when it is interrupted (SIGTERM, or SIGINT as from Ctrl-C)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_load_benchmark_stops_every_server_and_worker(sig: signal.Signals) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in {"BENCH_DATABASE_URL", "TEST_DATABASE_URL"}
    }
    env.update(
        BENCH_LOAD_EMAILS="40", BENCH_LOAD_TRAIN_EVERY="8", PYTHONUNBUFFERED="1"
    )  # a small model is enough here
    bench = subprocess.Popen(
        [sys.executable, "-m", "bench", "load"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started: list[int] = []
    lines: list[str] = []
    try:
        assert bench.stdout is not None
        deadline = time.monotonic() + 300
        while (
            time.monotonic() < deadline
        ):  # until the service's web server and worker are both running
            line = bench.stdout.readline()
            if not line:
                break
            lines.append(line)
            if match := re.search(r"\[started (.*): pid (\d+)\]", line):
                started.append(int(match.group(2)))
                if match.group(1).startswith("worker"):
                    break
        assert len(started) == 3, "".join(
            lines
        )  # the bare endpoint (stopped by now), the service, its worker
        assert _group_alive(started[1]) and _group_alive(started[2])
        bench.send_signal(sig)  # to the benchmark alone, as a supervisor or an impatient user would
        rest, _ = bench.communicate(timeout=120)
        assert bench.returncode != 0, "".join(lines) + rest
        deadline = time.monotonic() + 15
        while any(_group_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in started if _group_alive(pid)] == [], "".join(lines) + rest
    finally:
        for pgid in [bench.pid, *started]:
            if _group_alive(pgid):
                os.killpg(pgid, signal.SIGKILL)
        bench.wait()
