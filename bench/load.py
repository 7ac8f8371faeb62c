"""Load benchmark: N realistic emails POSTed to /api/v1/inbound at concurrency C against gunicorn.

Runs the service on SQLite and (when TEST_DATABASE_URL or BENCH_DATABASE_URL names one) PostgreSQL,
and a bare Flask endpoint as the floor, in the same run. Loopback only. BENCH_LOAD_EMAILS (default
20,000), BENCH_LOAD_CONCURRENCY (16) and BENCH_LOAD_MAX_SECONDS (1,200 per server: what is not sent by
then is left out, and said so) bound it; every server is stopped afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import func, select, text

from bench.common import REPO, percentile, wait_for_http
from triage import schema
from triage.classifier import registry
from triage.classifier.dataset import TRAIN_FILE, load_jsonl
from triage.classifier.training import train
from triage.database import make_engine, make_session_factory
from triage.helpdesk import tokens
from triage.models import Base, OutboxItem, Ticket

WORKERS = 4


def _emails(n: int) -> list[bytes]:
    rows = [json.loads(line) for line in (REPO / "training_data" / TRAIN_FILE).read_text().splitlines()]
    rng = random.Random(5)
    out = []
    for i in range(n):
        r = rng.choice(rows)
        msg = EmailMessage()
        msg["From"] = f"centre{i}@centre{i % 997}.example"  # one sender each: no per-sender caps in the way
        msg["To"] = "support@imi-awards.example"
        msg["Subject"] = r["subject"]
        msg["Message-ID"] = f"<load{i}@centre{i % 997}.example>"
        msg.set_content(r["body"])
        out.append(msg.as_bytes())
    return out


@dataclass
class Run:
    """What one server did with the load: time, latencies of the requests sent, errors, and how many were sent."""

    elapsed: float
    latencies: list[float]
    errors: int
    sent: int
    accepted: int


def _fire(port: int, emails: list[bytes], token: str, concurrency: int, max_seconds: float) -> Run:
    """POST every email (stopping at `max_seconds`); 202 is success, anything else an error."""
    local = threading.local()
    deadline = time.perf_counter() + max_seconds

    def send(raw: bytes) -> tuple[float, int]:
        if time.perf_counter() > deadline:
            return 0.0, -1  # not sent: the run is bounded in time
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        start = time.perf_counter()
        try:
            local.conn.request("POST", "/api/v1/inbound", body=raw, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"})  # fmt: skip
            response = local.conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            status = 0
        return time.perf_counter() - start, status

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for r in pool.map(send, emails) if r[1] != -1]
    elapsed = time.perf_counter() - start
    return Run(elapsed, [r[0] * 1000 for r in results], sum(1 for r in results if r[1] != 202), len(results),
               sum(1 for r in results if r[1] == 202))  # fmt: skip


def _serve(module: str, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    # the production config (triage/web/gunicorn_conf.py: multi-process metrics) with bench-sized workers
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:triage.web.gunicorn_conf",
                             "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                             module], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


def _report(name: str, total: int, run: Run, floor: float | None) -> None:
    rate = run.sent / run.elapsed
    ratio = f"   (ratio to the bare endpoint {rate / floor:.2f})" if floor else ""
    cut = f"  STOPPED at the time bound after {run.sent} of {total}" if run.sent < total else ""
    print(f"  {name:28} {rate:9.1f} emails/s  p50 {percentile(run.latencies, 50):7.1f} ms  "
          f"p99 {percentile(run.latencies, 99):7.1f} ms  errors {run.errors}{ratio}{cut}")  # fmt: skip


def main() -> None:
    """Run the floor, then the service on each database, and check the counts afterwards."""
    n = int(os.environ.get("BENCH_LOAD_EMAILS", "20000"))
    concurrency = int(os.environ.get("BENCH_LOAD_CONCURRENCY", "16"))
    max_seconds = float(os.environ.get("BENCH_LOAD_MAX_SECONDS", "1200"))  # per server; the rest is not sent
    print(f"== load: {n} emails to POST /api/v1/inbound, concurrency {concurrency}, gunicorn {WORKERS} workers ==")
    emails = _emails(n)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        models = scratch / "models"
        result = train(load_jsonl(REPO / "training_data" / TRAIN_FILE), None, "vload", n_jobs=2)
        registry.save(result.model, models)
        base_env = {**os.environ, "MODELS_DIR": str(models), "TRIAGE_INSTANCE_PATH": str(scratch), "SECRET_KEY": "bench",
                    "OUTBOX_DIR": str(scratch / "outbox"), "API_RATE_PER_MINUTE": "1000000"}  # fmt: skip
        port = 18100
        proc = _serve("bench.bare_app:app", port, base_env)
        try:
            time.sleep(2)
            bare = _fire(port, emails, "none", concurrency, max_seconds)
        finally:
            _stop(proc)
        floor = bare.sent / bare.elapsed
        _report("bare Flask endpoint (floor)", n, bare, None)
        targets = [("SQLite", f"sqlite:///{scratch / 'load.db'}")]
        pg = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if pg:
            targets.append(("PostgreSQL", pg))
        for name, url in targets:
            engine = make_engine(url)
            if engine.dialect.name == "postgresql":
                with engine.begin() as conn:
                    conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                    conn.execute(text("CREATE SCHEMA public"))
            schema.upgrade(engine)
            sessions = make_session_factory(engine)
            with sessions() as s:
                registry.register(s, result.model, "bench", True, "")
                registry.activate(s, "vload", "bench")
                _row, token = tokens.create_token(s, "load")
                s.commit()
            port += 1
            proc = _serve("app:app", port, {**base_env, "DATABASE_URL": url})
            try:
                wait_for_http(port, proc)
                run = _fire(port, emails, token, concurrency, max_seconds)
            finally:
                _stop(proc)
            _report(f"service on {name}", n, run, floor)
            with sessions() as s:
                tickets = s.scalar(select(func.count()).select_from(Ticket))
                outbox = s.scalar(select(func.count()).select_from(OutboxItem))
            print(f"  {'':28} afterwards: {tickets} tickets (expected {run.accepted}), {outbox} outbox rows (expected {run.accepted}: "
                  "one auto-reply or acknowledgement each)")  # fmt: skip
            if engine.dialect.name == "postgresql":
                Base.metadata.drop_all(engine)
            engine.dispose()


if __name__ == "__main__":
    main()
