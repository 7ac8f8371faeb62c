"""App factory, configuration defaults, health endpoint and start-up errors."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from triage import create_app
from triage.config import ConfigError, Settings

REPO = Path(__file__).resolve().parent.parent


def run_flask(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_defaults_put_sqlite_and_a_generated_secret_in_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("TRIAGE_INSTANCE_PATH", str(tmp_path / "inst"))
    first = Settings.from_env()
    first.prepare_instance()
    assert first.database_url == f"sqlite:///{tmp_path / 'inst' / 'triage.db'}"
    assert len(first.secret_key) == 64
    assert (tmp_path / "inst" / "secret_key").stat().st_mode & 0o077 == 0
    second = Settings.from_env()
    second.prepare_instance()
    assert second.secret_key == first.secret_key


def _prepare_together(instance: str, start: Any, results: Any) -> None:
    start.wait()
    try:
        settings = Settings(instance_path=Path(instance))
        settings.prepare_instance()
        results.put(settings.secret_key)
    except ConfigError as exc:
        results.put(f"error: {exc}")


def test_processes_starting_together_on_a_new_instance_folder_all_start_with_one_secret(
    tmp_path: Path,
) -> None:
    """Web workers, worker processes and their helpers start at once on a shared instance folder: none may
    fail the folder's write check because of another, and they must sign with the same secret key."""
    context = multiprocessing.get_context("fork")
    for attempt in range(5):
        instance, start, results = (
            str(tmp_path / f"inst{attempt}"),
            context.Barrier(8),
            context.Queue(),
        )
        procs = [
            context.Process(target=_prepare_together, args=(instance, start, results))
            for _ in range(8)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        keys = [results.get(timeout=5) for _ in procs]
        assert [k for k in keys if k.startswith("error")] == [] and len(set(keys)) == 1, keys
        assert (Path(instance) / "secret_key").read_text().strip() == keys[0]
        assert sorted(p.name for p in Path(instance).iterdir()) == [
            "secret_key",
            "triage.db",
        ]  # no probe left


def test_bad_number_in_environment_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PORT", "twenty-five")
    with pytest.raises(ConfigError, match="SMTP_PORT must be a whole number"):
        Settings.from_env()


def test_health_reports_database_and_missing_model(app, client: FlaskClient) -> None:  # type: ignore[no-untyped-def]
    from triage.helpdesk import tokens

    with app.extensions["triage.sessions"]() as s:
        _row, metrics = tokens.create_token(s, "monitoring", scopes=["metrics"])
        s.commit()
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 503 and anonymous.get_json() == {"status": "unavailable"}
    response = client.get("/healthz", headers={"Authorization": f"Bearer {metrics}"})
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == {"ok": True}
    assert body["model"]["version"] is None
    assert "train" in body["model"]["error"]
    assert body["outbox"] == {"pending": 0, "failed": 0}


def test_health_is_503_when_database_is_unreachable(tmp_path: Path) -> None:
    app = create_app(
        {"DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none", "INSTANCE_PATH": tmp_path}
    )
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable"}


def test_cli_lists_the_triage_commands() -> None:
    result = run_flask("triage", "--help")
    assert result.returncode == 0, result.stderr
    for command in ("migrate", "serve", "worker"):
        assert command in result.stdout


def test_unreachable_database_stops_startup_with_one_line(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
        "TRIAGE_INSTANCE_PATH": str(tmp_path),
    }
    result = run_flask("triage", "migrate", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the database" in lines[0], result.stderr


def test_unwritable_instance_stops_startup_with_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_flask("triage", "migrate", env={"TRIAGE_INSTANCE_PATH": str(blocker / "instance")})
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not writable" in lines[0], result.stderr


def test_invalid_database_url_is_one_line(tmp_path: Path) -> None:
    result = run_flask(
        "triage",
        "migrate",
        env={"DATABASE_URL": "not a url", "TRIAGE_INSTANCE_PATH": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "not a valid database URL" in result.stderr


def test_serve_starts_web_and_worker_and_stops_cleanly(tmp_path: Path) -> None:
    """What `make run` ends with: the web app answers, the worker runs, Ctrl-C stops both."""
    import json
    import signal
    import threading
    import time
    import urllib.error
    import urllib.request

    from tests.conftest import default_sigint, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    env.update(
        {"TRIAGE_INSTANCE_PATH": str(tmp_path / "inst"), "MODELS_DIR": str(tmp_path / "models")}
    )
    assert run_flask("triage", "migrate", env=env).returncode == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "triage", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=default_sigint,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True
    )  # type: ignore[union-attr]
    reader.start()
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/healthz", timeout=2
                ) as response:
                    body = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                body = json.loads(exc.read())
            except OSError:
                time.sleep(0.2)
                continue
            break
        assert body == {
            "status": "unavailable"
        }  # it answers; no model is trained yet (details need a token)
        for _ in range(150):  # the worker is a second process; give it time to import and start
            if any("worker started" in line for line in lines):
                break
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=5)
    output = "".join(lines)
    assert f"http://127.0.0.1:{port}/" in output
    assert "no active model" in output and "create-user" in output
    assert "worker started" in output
