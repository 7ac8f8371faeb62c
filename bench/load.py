"""Load: a burst of emails to the webhook (accept latency), drained by the workers (processing rate, reply latency).

For each database (SQLite; PostgreSQL too when BENCH_DATABASE_URL or TEST_DATABASE_URL names one; its
`public` schema is recreated, so point it at a scratch database), in one run:
  - accept floor: a bare Flask 202 endpoint under the same gunicorn, same load;
  - components floor: stdlib email parse + the bare Pipeline's predict_proba + one INSERT per email, in
    as many processes as the service has workers;
  - the service: gunicorn (4 web workers) and `flask triage worker --processes N` (2 on PostgreSQL, 1 on
    SQLite); every email is POSTed as fast as the webhook takes them (concurrency 16), then the bench
    waits until each is processed and its reply sent: time to drain, mail-to-reply p50/p99, lost and
    doubled (tickets and outbox rows per Message-ID);
  - the workers alone: the worker is stopped, a second burst of as many new emails is stored through the
    webhook, the worker is started again and the bench times how fast it drains stored mail once all its
    processes are up, from their first batch (the figure comparable with the components floor, which also
    reads mail already there and starts its processes with the model loaded);
  - a per-stage profile of the processing path (in this process, on the same mail).
Every server is waited for (/healthz) before it is fired at, and an error in a floor run aborts the bench.
The last line is `RESULT accept_p99_ms=.. processed_per_s=.. floor_per_s=.. ratio=.. lost=.. duplicates=..`
(the PostgreSQL run when there is one; processed_per_s is the workers-alone rate, ratio = processed_per_s /
components floor; during the first burst the webhook and the workers share the CPU, and that rate is
printed above it).

Size: BENCH_LOAD_EMAILS (default 300, a quick profile; BENCH_FULL=1: 3,000), BENCH_LOAD_CONCURRENCY (16),
BENCH_LOAD_WORKERS (worker processes on PostgreSQL, 2), BENCH_LOAD_MAX_SECONDS (600 per drain).
Every process it starts is in a process group of its own and is stopped on exit, Ctrl-C, SIGTERM or error.
"""

from __future__ import annotations

import atexit
import contextlib
import cProfile
import http.client
import json
import multiprocessing
import os
import pstats
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from bench.common import REPO, full_profile, migrated_engine, percentile, shared_model
from triage.classifier import registry
from triage.classifier.dataset import TRAIN_FILE
from triage.database import make_engine, make_session_factory, statement_session
from triage.helpdesk import tokens
from triage.mail.inbound import NO_ACTION_NEEDED
from triage.orm import InboundEmail, Message, OutboxItem, Ticket, utcnow

DESCRIPTION = (
    "webhook burst: accept p99, processing rate vs a components floor, reply latency, lost/doubled"
)
WEB_WORKERS = 4
BATCH = 50

_started: list[
    subprocess.Popen[bytes]
] = []  # every process this run started (each leads its own group)


# --- process hygiene: nothing outlives the benchmark -------------------------------------------------------


def _spawn(
    command: list[str], env: dict[str, str], what: str, **kwargs: Any
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, **kwargs)
    _started.append(proc)
    print(f"  [started {what}: pid {proc.pid}]", flush=True)
    return proc


def _stop(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM the process group, wait, then SIGKILL whatever is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # helpers or gunicorn workers that did not follow
    proc.wait()
    if proc in _started:
        _started.remove(proc)


def _stop_all() -> None:
    for proc in list(_started):
        _stop(proc, grace=5)


def _on_signal(signum: int, _frame: object) -> None:
    for sig in (
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGINT,
    ):  # a second Ctrl-C must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(128 + signum)  # unwinds through every `finally`, then atexit


def _guard() -> None:
    atexit.register(_stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)


# --- mail and firing ---------------------------------------------------------------------------------------


def _emails(n: int, first: int = 0) -> list[bytes]:
    rows = [
        json.loads(line) for line in (REPO / "training_data" / TRAIN_FILE).read_text().splitlines()
    ]
    rng = random.Random(5 + first)
    out = []
    for i in range(first, first + n):
        r = rng.choice(rows)
        msg = EmailMessage()
        msg["From"] = (
            f"centre{i}@centre{i % 997}.example"  # one sender each: no per-sender caps in the way
        )
        msg["To"] = "support@imi-awards.example"
        msg["Subject"] = r["subject"]
        msg["Message-ID"] = f"<load{i}@centre{i % 997}.example>"
        msg.set_content(r["body"])
        out.append(msg.as_bytes())
    return out


@dataclass
class Fired:
    """The burst as the load generator saw it: per email, when its POST started and how long it took."""

    elapsed: float
    started: dict[int, float] = field(
        default_factory=dict
    )  # email index -> wall-clock start (time.time())
    latencies: list[float] = field(default_factory=list)  # ms, accepted requests
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def accepted(self) -> int:
        """How many POSTs were answered 202."""
        return len(self.latencies)


def _post(port: int, request: bytes) -> str:
    """Send one prepared HTTP request on a new connection; the status code, or the error's name."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(request)
            answer = bytearray()
            while chunk := sock.recv(65536):  # the server closes the connection after its answer
                answer += chunk
    except OSError as exc:
        return type(exc).__name__
    status = answer.split(b" ", 2)[1:2]
    return status[0].decode("ascii", "replace") if status else "no answer"


def _fire(port: int, emails: list[bytes], token: str, concurrency: int) -> Fired:
    """POST every email as fast as the server takes them; 202 is success, anything else an error.

    The load generator shares the CPU with the server it measures, so it does as little as it can per
    request: every request is built before the clock starts, sent on a plain socket, and its answer read to
    the end (gunicorn's sync workers close the connection after each answer, as the standard client's would
    be). A mail provider calling the webhook runs on other machines.
    """
    head = (
        f"POST /api/v1/inbound HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: message/rfc822\r\nConnection: close\r\nContent-Length: "
    )
    requests = [f"{head}{len(raw)}\r\n\r\n".encode() + raw for raw in emails]
    fired = Fired(0.0)
    lock = threading.Lock()

    def send(index: int) -> None:
        wall, start = time.time(), time.perf_counter()
        outcome = _post(port, requests[index])
        ms = (time.perf_counter() - start) * 1000
        with lock:
            if outcome == "202":
                fired.started[index], _ = wall, fired.latencies.append(ms)
            else:
                fired.errors[outcome] += 1

    start = time.perf_counter()
    pool = ThreadPoolExecutor(concurrency)
    try:
        list(pool.map(send, range(len(emails))))
    finally:  # interrupted: drop what is not sent yet instead of sending it all first
        pool.shutdown(wait=True, cancel_futures=True)
    fired.elapsed = time.perf_counter() - start
    return fired


def _wait_http(
    port: int, proc: subprocess.Popen[bytes], path: str = "/healthz", seconds: float = 120
) -> None:
    """Wait until the server answers 200 on `path` (raises if it exits or never does)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server pid {proc.pid} exited during start-up ({proc.returncode})")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server on port {port} did not answer {path} within {seconds:.0f} s")


def _gunicorn(module: str, port: int, env: dict[str, str], what: str) -> subprocess.Popen[bytes]:
    # the production config (triage/web/gunicorn_conf.py: multi-process metrics) with bench-sized workers
    return _spawn(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:triage.web.gunicorn_conf",
            "--workers",
            str(WEB_WORKERS),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            module,
        ],
        env,
        what,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _worker(processes: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`flask triage worker --processes N`, returned once every process has loaded the model and started."""
    command = [
        sys.executable,
        "-m",
        "flask",
        "--app",
        "app",
        "triage",
        "worker",
        "--processes",
        str(processes),
    ]
    with log.open("wb") as out:
        proc = _spawn(
            command,
            {**env, "PYTHONUNBUFFERED": "1"},
            f"worker --processes {processes}",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 180
    while log.read_text(errors="replace").count("worker started") < processes:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                f"the worker did not start:\n{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.1)
    return proc


# --- the components floor ----------------------------------------------------------------------------------


def _floor_chunk(args: tuple[str, list[bytes], Any]) -> int:
    """One floor process: parse each email, predict_proba per batch, one INSERT per email (committed per batch)."""
    url, raws, pipeline = args
    engine = make_engine(url)
    done = 0
    with engine.connect() as conn:
        for start in range(0, len(raws), BATCH):
            pairs, ids = [], []
            for raw in raws[start : start + BATCH]:
                msg = message_from_bytes(raw, policy=policy.default)
                body = msg.get_body(("plain",))
                pairs.append((str(msg["Subject"]), body.get_content() if body is not None else ""))
                ids.append(str(msg["Message-ID"]))
            categories = pipeline.classes_[pipeline.predict_proba(pairs).argmax(axis=1)]
            with conn.begin():
                for message_id, category in zip(ids, categories, strict=True):
                    conn.execute(
                        text("INSERT INTO bench_floor (message_id, category) VALUES (:m, :c)"),
                        {"m": message_id, "c": str(category)},
                    )
                    done += 1
    engine.dispose()
    return done


def _components_floor(url: str, emails: list[bytes], pipeline: Any, processes: int) -> float:
    """Emails/s of the bare components in `processes` processes (forked: the model is loaded once, here)."""
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_floor"))
        kind = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
        conn.execute(
            text(
                f"CREATE TABLE bench_floor (id {kind} PRIMARY KEY, message_id VARCHAR(998) UNIQUE, "
                "category VARCHAR(64))"
            )
        )
    chunks = [(url, emails[i::processes], pipeline) for i in range(processes)]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        start = time.perf_counter()
        done = sum(pool.map(_floor_chunk, chunks))
        elapsed = time.perf_counter() - start
    with engine.begin() as conn:
        stored = conn.scalar(text("SELECT count(*) FROM bench_floor"))
        conn.execute(text("DROP TABLE bench_floor"))
    engine.dispose()
    if done != len(emails) or stored != len(emails):
        raise SystemExit(
            f"components floor: {done} processed and {stored} stored of {len(emails)}: aborting"
        )
    return len(emails) / elapsed


# --- the service -------------------------------------------------------------------------------------------


@dataclass
class Drained:
    """What the workers made of the burst."""

    seconds: float  # first POST to the last reply sent
    processed_per_s: float
    reply_ms: list[float]
    lost: int
    silent: int  # automatic mail (receipts, bounces...) the service stores and, by design, never answers
    doubled_tickets: int
    doubled_replies: int
    timed_out: bool


def _processed(conn: Any, after_id: int = 0) -> int:
    """How many stored emails (with an id above `after_id`) the workers have processed."""
    query = select(func.count()).select_from(InboundEmail).where(InboundEmail.status == "processed")
    return conn.scalar(query.where(InboundEmail.id > after_id)) or 0


def _silent_by_design() -> Any:
    """Inbound Message-IDs of tickets resolved as automatic mail: these get no reply, on purpose."""
    return (
        select(Message.message_id)
        .join(Ticket, Ticket.id == Message.ticket_id)
        .where(Message.direction == "inbound", Ticket.resolution == NO_ACTION_NEEDED)
    )


def _drain(
    engine: Engine, fired: Fired, message_ids: dict[int, str], max_seconds: float
) -> Drained:
    """Wait until every accepted email is processed and answered (or the time bound), then count.

    Automatic mail in the sample (a read receipt, say) is processed and stored but never answered; it is
    counted as silent, not lost, and is not waited for.
    """
    deadline = time.monotonic() + max_seconds
    expected = fired.accepted
    timed_out = False
    with engine.connect() as conn:
        while True:
            processed = _processed(conn)
            sent = conn.scalar(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "sent")
            )
            silent_now = conn.scalar(
                select(func.count()).select_from(_silent_by_design().subquery())
            )
            conn.rollback()
            if processed >= expected and (sent or 0) + (silent_now or 0) >= expected:
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            time.sleep(0.1)
        processed_at = dict(
            conn.execute(select(InboundEmail.message_id, InboundEmail.processed_at)).all()
        )
        tickets = Counter(
            conn.scalars(select(Message.message_id).where(Message.direction == "inbound"))
        )
        silent_ids = set(conn.scalars(_silent_by_design()))
        replies: dict[str, list[Any]] = {}
        for in_reply_to, sent_at in conn.execute(
            select(Message.in_reply_to, OutboxItem.sent_at).join(
                OutboxItem, OutboxItem.message_id == Message.id
            )
        ):
            replies.setdefault(in_reply_to, []).append(sent_at)
    first = min(fired.started.values())
    reply_ms, lost, silent, last = [], 0, 0, first
    for index, wall in fired.started.items():
        mid = message_ids[index]
        sent = [s for s in replies.get(mid, []) if s is not None]
        done = processed_at.get(mid)
        if tickets.get(mid) and done is not None and mid in silent_ids and not sent:
            silent += 1
            continue
        if not tickets.get(mid) or not sent or done is None:
            lost += 1
            continue
        reply_at = min(sent).replace(tzinfo=UTC).timestamp()
        reply_ms.append((reply_at - wall) * 1000)
        last = max(last, reply_at)
    last_processed = max(
        (d.replace(tzinfo=UTC).timestamp() for d in processed_at.values() if d), default=first
    )
    return Drained(
        seconds=last - first,
        processed_per_s=expected / max(1e-9, last_processed - first),
        reply_ms=reply_ms,
        lost=lost,
        silent=silent,
        doubled_tickets=sum(1 for n in tickets.values() if n > 1),
        doubled_replies=sum(1 for sent in replies.values() if len(sent) > 1),
        timed_out=timed_out,
    )


def _drain_stored(
    engine: Engine, after_id: int, n: int, max_seconds: float, ready: datetime
) -> tuple[float, int]:
    """The workers' steady rate on the `n` stored emails with ids above `after_id`, and how many of them they
    processed (all of them unless the time bound cut it short).

    The rate leaves out the workers' start-up: it counts the emails processed after the first batch that
    began once every worker process was `ready`, over the time from that batch to the last one (both read
    from the database). The first process starts on the stored mail while the others are still loading the
    model (about 2 s, on the same CPU): counting from its first batch measured one process, not N.
    """
    deadline = time.monotonic() + max_seconds
    with engine.connect() as conn:
        done = 0
        while done < n and time.monotonic() < deadline:
            time.sleep(0.1)
            done = _processed(conn, after_id)
            conn.rollback()
        stored = InboundEmail.id > after_id
        first, last = conn.execute(
            select(func.min(InboundEmail.processed_at), func.max(InboundEmail.processed_at)).where(
                stored, InboundEmail.processed_at >= ready
            )
        ).one()
        if first is None:
            return float("nan"), done
        later = conn.scalar(
            select(func.count())
            .select_from(InboundEmail)
            .where(stored, InboundEmail.processed_at > first)
        )
    span = (last - first).total_seconds()
    return (later / span if span > 0 else float("nan")), done


def _database(url: str, model: Any) -> tuple[Engine, sessionmaker[Session]]:
    """A freshly migrated database (PostgreSQL: its public schema recreated) with `model` active."""
    engine = migrated_engine(url)
    sessions = make_session_factory(engine)
    with sessions() as s:
        registry.register(s, model, "bench", True, "")
        registry.activate(s, model.version, "bench")
        s.commit()
    return engine, sessions


# --- the per-stage profile ---------------------------------------------------------------------------------


def _profile(emails: list[bytes], model: Any, scratch: Path, base_env: dict[str, str]) -> None:
    """Accept and process the mail in this process on a scratch SQLite database; ms per email per stage."""
    from triage.classifier.registry import ModelProvider
    from triage.config import Settings
    from triage.mail.inbound import InboundContext, accept, process_batch

    url = f"sqlite:///{scratch / 'profile.db'}"
    engine, sessions = _database(url, model)
    settings = Settings(
        instance_path=scratch,
        database_url=url,
        models_dir=Path(base_env["MODELS_DIR"]),
        secret_key="bench",
    )
    ctx = InboundContext(settings, ModelProvider(sessions, settings.models_dir, 60))
    ctx.models.current()
    stages: Counter[str] = Counter()
    profiler = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    start = time.perf_counter()
    with statement_session(sessions) as session:
        for raw in emails:
            accept(session, raw, "webhook")
    stages["accept (header check + INSERT)"] = time.perf_counter() - start
    if profiler:
        profiler.enable()
    while outcome := process_batch(sessions, ctx):
        if not outcome.tickets:
            break
        stages.update(outcome.timings)
    if profiler:
        profiler.disable()
    engine.dispose()
    n = len(emails)
    total = sum(v for k, v in stages.items() if not k.startswith("accept"))
    print(f"  per-stage profile, in one process on SQLite ({n} emails, batches of {BATCH}):")
    for stage, seconds in stages.items():
        print(f"    {stage:34} {seconds / n * 1000:7.2f} ms/email")
    print(
        f"    {'processing in all':34} {total / n * 1000:7.2f} ms/email ({n / total:.0f} emails/s in one process)"
    )
    if profiler:
        print(
            "  cProfile of the processing (BENCH_PROFILE=1): the service's functions by cumulative time"
        )
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(r"triage/", 30)


# --- the run -----------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One database's figures."""

    name: str
    accept_p99: float
    processed_per_s: float  # during the burst, with the webhook taking mail at the same time
    workers_per_s: float  # the workers alone, on mail already stored
    floor_per_s: float
    lost: int
    duplicates: int


def _service(
    name: str,
    url: str,
    emails: list[bytes],
    model: Any,
    base_env: dict[str, str],
    port: int,
    processes: int,
    concurrency: int,
    max_seconds: float,
    scratch: Path,
) -> Result:
    n = len(emails)
    floor = _components_floor(url, emails, model.pipeline, processes)
    print(
        f"  {'components floor, ' + str(processes) + ' process(es)':36} {floor:9.1f} emails/s "
        "(stdlib parse + bare Pipeline.predict_proba + one INSERT each)"
    )
    engine, sessions = _database(url, model)
    with sessions() as s:
        _row, token = tokens.create_token(s, "load")
        s.commit()
    env = {**base_env, "DATABASE_URL": url}
    web = _gunicorn("app:app", port, env, f"service on {name}")
    worker = None
    try:
        _wait_http(port, web)
        worker = _worker(processes, env, scratch / f"worker-{name}.log")
        fired = _fire(port, emails, token, concurrency)
        message_ids = {i: str(message_from_bytes(emails[i])["Message-ID"]) for i in range(n)}
        drained = _drain(engine, fired, message_ids, max_seconds)
        # the workers alone: a second burst is stored while they are stopped, then they drain it
        _stop(worker)
        worker = None
        with engine.connect() as conn:
            watermark = conn.scalar(select(func.max(InboundEmail.id))) or 0
        stored = _fire(port, _emails(n, first=n), token, concurrency)
        if stored.errors:
            raise SystemExit(
                f"storing the second burst had errors ({dict(stored.errors)}): aborting"
            )
        worker = _worker(processes, env, scratch / f"worker-{name}-stored.log")
        worker_rate, done = _drain_stored(engine, watermark, stored.accepted, max_seconds, utcnow())
    finally:
        _stop(web)
        if worker is not None:
            _stop(worker)
    accept_p99 = percentile(fired.latencies, 99) if fired.latencies else float("nan")
    errors = ", ".join(f"{k}: {v}" for k, v in fired.errors.items()) or "none"
    print(
        f"  {'accept (webhook), ' + name:36} {fired.accepted / fired.elapsed:9.1f} emails/s  "
        f"p50 {percentile(fired.latencies, 50):6.1f} ms  p99 {accept_p99:6.1f} ms  errors {errors}"
    )
    cut = "  STOPPED at the time bound: figures cover what was done" if drained.timed_out else ""
    print(
        f"  {'processing, ' + name + f', {processes} worker proc.':36} {drained.processed_per_s:9.1f} "
        f"emails/s (ratio to the components floor {drained.processed_per_s / floor:.2f}); drained in "
        f"{drained.seconds:.1f} s{cut}"
    )
    bound = (
        f"  STOPPED at the time bound: {stored.accepted - done} not processed"
        if done < stored.accepted
        else ""
    )
    print(
        f"  {'workers alone, on stored mail':36} {worker_rate:9.1f} emails/s (ratio to the components floor "
        f"{worker_rate / floor:.2f}; {stored.accepted} emails stored while they were stopped){bound}"
    )
    if drained.reply_ms:
        print(
            f"  {'mail-to-reply (POST to reply sent)':36} p50 {percentile(drained.reply_ms, 50):8.0f} ms  "
            f"p99 {percentile(drained.reply_ms, 99):8.0f} ms"
        )
    print(
        f"  {'afterwards':36} {fired.accepted} accepted, lost {drained.lost}, automatic (no reply by design) "
        f"{drained.silent}, doubled tickets "
        f"{drained.doubled_tickets}, doubled replies {drained.doubled_replies}"
    )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    lost = (
        drained.lost + (n - fired.accepted) + (n - done)
    )  # the second burst: not stored or not processed
    return Result(
        name,
        accept_p99,
        drained.processed_per_s,
        worker_rate,
        floor,
        lost,
        drained.doubled_tickets + drained.doubled_replies,
    )


def main() -> None:
    """Floors, then the service on each database, then the per-stage profile and the RESULT line."""
    _guard()
    n = int(os.environ.get("BENCH_LOAD_EMAILS", "3000" if full_profile() else "300"))
    concurrency = int(os.environ.get("BENCH_LOAD_CONCURRENCY", "16"))
    pg_processes = int(os.environ.get("BENCH_LOAD_WORKERS", "2"))
    max_seconds = float(os.environ.get("BENCH_LOAD_MAX_SECONDS", "600"))
    print(
        f"== load: a burst of {n} emails to POST /api/v1/inbound, concurrency {concurrency}, gunicorn "
        f"{WEB_WORKERS} web workers; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} ==",
        flush=True,
    )
    emails = _emails(n)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        models = scratch / "models"
        every = int(
            os.environ.get("BENCH_LOAD_TRAIN_EVERY", "1")
        )  # >1: a quicker, smaller model (for tests)
        trained = shared_model(every)
        registry.save(trained, models)
        model = registry.load(models, trained.version)
        base_env = {
            **os.environ,
            "MODELS_DIR": str(models),
            "TRIAGE_INSTANCE_PATH": str(scratch),
            "SECRET_KEY": "bench",
            "OUTBOX_DIR": str(scratch / "outbox"),
            "API_RATE_PER_MINUTE": "1000000",
            "SMTP_HOST": "",
        }
        port = 18100 + os.getpid() % 500 * 4
        bare = _gunicorn("bench.bare_app:app", port, base_env, "bare 202 endpoint")
        try:
            _wait_http(port, bare)
            floor = _fire(port, emails, "none", concurrency)
        finally:
            _stop(bare)
        if floor.errors:
            raise SystemExit(
                f"accept floor run had errors ({dict(floor.errors)}): aborting, its figures mean nothing"
            )
        print(
            f"  {'accept floor (bare Flask 202)':36} {floor.accepted / floor.elapsed:9.1f} emails/s  "
            f"p50 {percentile(floor.latencies, 50):6.1f} ms  p99 {percentile(floor.latencies, 99):6.1f} ms  errors 0"
        )
        targets = [("SQLite", f"sqlite:///{scratch / 'load.db'}", 1)]
        pg = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
        if pg:
            targets.append(("PostgreSQL", pg, pg_processes))
        results = []
        for offset, (name, url, processes) in enumerate(targets, start=1):
            print(f" -- {name} --", flush=True)
            results.append(
                _service(
                    name,
                    url,
                    emails,
                    model,
                    base_env,
                    port + offset,
                    processes,
                    concurrency,
                    max_seconds,
                    scratch,
                )
            )
        _profile(emails[: min(n, 600)], model, scratch, base_env)
    last = results[-1]
    print(f"  (load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    print(
        f"RESULT accept_p99_ms={last.accept_p99:.1f} processed_per_s={last.workers_per_s:.1f} "
        f"floor_per_s={last.floor_per_s:.1f} ratio={last.workers_per_s / last.floor_per_s:.2f} "
        f"lost={last.lost} duplicates={last.duplicates}"
    )


if __name__ == "__main__":
    main()
