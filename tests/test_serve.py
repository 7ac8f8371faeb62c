"""`flask triage serve` as a real process: it stops the worker it started, and says what to do when the port is taken."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import default_sigint, free_port

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads child processes from /proc"
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "SMTP_", "IMAP_"))
    }
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}",
            "TRIAGE_INSTANCE_PATH": str(tmp_path / "instance"),
            "MODELS_DIR": str(tmp_path / "models"),
            "SECRET_KEY": "serve-test",
        }
    )
    (tmp_path / "models").mkdir()
    return env


def _flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "app", "triage", *args]


def _start_serve(tmp_path: Path, port: int) -> tuple[subprocess.Popen[bytes], int]:
    """Start serve on `port`; return it and the pid of the worker it started, once the web app answers."""
    env = _env(tmp_path)
    subprocess.run(_flask("migrate"), cwd=REPO, env=env, check=True, capture_output=True)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        _flask("serve", "--port", str(port)),
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=log,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        assert time.monotonic() < deadline, "serve did not answer within 60 s"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            break
        except OSError:
            time.sleep(0.1)
    children = _children(proc.pid)
    assert len(children) == 1, f"expected one worker child, found {children}"
    return proc, children[0]


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def _wait_gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def _nice(pid: int) -> int:
    """The process's nice value (field 19 of /proc/PID/stat)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def _autogroup(pid: int) -> tuple[str, int] | None:
    """(group name, nice) of the process's scheduler autogroup; None where the kernel has no autogroups."""
    try:
        name, _, nice = Path(f"/proc/{pid}/autogroup").read_text().split()
    except (FileNotFoundError, ValueError):
        return None
    return name, int(nice)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_signal_to_serve_stops_its_worker(tmp_path: Path, signum: int) -> None:
    proc, worker = _start_serve(tmp_path, free_port())
    try:
        deadline = (
            time.monotonic() + 30
        )  # the worker lowers its priority (WORKER_NICE, 10) once it has started
        while (
            _nice(worker) != _nice(proc.pid) + 10 and time.monotonic() < deadline and _alive(worker)
        ):
            time.sleep(0.1)
        assert _nice(worker) == _nice(proc.pid) + 10, (
            "the worker runs at the web server's CPU priority"
        )
        web_group, worker_group = _autogroup(proc.pid), _autogroup(worker)
        if (
            web_group is not None and worker_group is not None and web_group[1] == 0
        ):  # Linux autogroups in use
            # CPU is shared between sessions before nice values count: the worker's session is lowered too
            assert worker_group[0] != web_group[0], (
                "the worker shares the web server's session (autogroup)"
            )
            assert worker_group[1] == 10, f"the worker's session kept its priority: {worker_group}"
            assert _autogroup(proc.pid) == web_group, (
                "lowering the worker lowered the web server's session"
            )
        proc.send_signal(
            signum
        )  # only to serve itself, not its process group: serve must pass it on
        proc.wait(timeout=30)
        assert _wait_gone(worker), f"worker {worker} still running after serve exited"
    finally:
        for pid in (proc.pid, worker):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_worker_stops_when_serve_is_killed(tmp_path: Path) -> None:
    proc, worker = _start_serve(tmp_path, free_port())
    try:
        proc.kill()
        proc.wait(timeout=10)
        assert _wait_gone(worker), f"worker {worker} outlived a SIGKILLed serve"
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)


def test_taken_port_says_how_to_choose_another(tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run(_flask("migrate"), cwd=REPO, env=env, check=True, capture_output=True)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            _flask("serve", "--port", str(port)),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode != 0
    assert "make run PORT=" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
