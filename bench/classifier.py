"""Classifier benchmark: classify CLI throughput, single-email latency, load time, size, memory."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib

from bench.common import (
    REPO,
    full_profile,
    median_time,
    percentile,
    row,
    sample_emails,
    shared_model,
    timed,
)
from triage import schema
from triage.classifier import registry
from triage.database import make_engine, make_session_factory

BATCH_EMAILS = 10_000 if full_profile() else 2_000
SINGLE_EMAILS = 1_000 if full_profile() else 300

_BARE_SCRIPT = """
import json, sys, time, joblib
pipe = joblib.load(sys.argv[1])
rows = [json.loads(l) for l in open(sys.argv[2])]
pipe.predict_proba([(r["subject"], r["body"]) for r in rows])
"""


def _child_run(args: list[str], stdin_path: Path, env: dict[str, str]) -> tuple[float, float]:
    """Run a child process with stdin from a file; return (seconds, peak RSS in MiB)."""
    with stdin_path.open("rb") as stdin:
        start = time.perf_counter()
        proc = subprocess.Popen(
            args, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=REPO
        )
        _, ru = os.wait4(proc.pid, 0)[1:]
        elapsed = time.perf_counter() - start
    proc.returncode = 0
    return elapsed, ru.ru_maxrss / 1024


def main() -> None:
    """Save the run's model in a scratch folder and print the classifier figures."""
    print("== classifier ==")
    trained = shared_model()
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        models_dir = scratch / "models"
        registry.save(trained, models_dir)
        db_url = f"sqlite:///{scratch / 'bench.db'}"
        engine = make_engine(db_url)
        schema.upgrade(engine)
        with make_session_factory(engine)() as session:
            registry.register(session, trained, "bench", True, "")
            registry.activate(session, trained.version, "bench")
            session.commit()
        engine.dispose()

        emails = sample_emails(BATCH_EMAILS)
        input_path = scratch / "emails.jsonl"
        input_path.write_text("".join(json.dumps(e) + "\n" for e in emails))
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "MODELS_DIR": str(models_dir),
            "TRIAGE_INSTANCE_PATH": str(scratch),
        }
        artifact = models_dir / trained.version / registry.ARTIFACT

        cli_seconds, cli_rss = _child_run(
            [sys.executable, "-m", "flask", "--app", "app", "triage", "classify"], input_path, env
        )
        bare_child_seconds, bare_rss = _child_run(
            [sys.executable, "-c", _BARE_SCRIPT, str(artifact), str(input_path)],
            Path(os.devnull),
            env,
        )
        model = registry.load(models_dir, trained.version)
        pairs = [(e["subject"], e["body"]) for e in emails]
        bare_seconds, _ = timed(lambda: model.pipeline.predict_proba(pairs))

        print(f" batch: {BATCH_EMAILS} emails")
        print(
            row(
                "triage classify (whole process) emails/s",
                BATCH_EMAILS / cli_seconds,
                "emails/s",
                BATCH_EMAILS / bare_seconds,
            )
        )
        print(
            row(
                "bare Pipeline in a process (load+predict) emails/s",
                BATCH_EMAILS / bare_child_seconds,
                "emails/s",
            )
        )
        print(
            row(
                "bare Pipeline.predict_proba in-process emails/s",
                BATCH_EMAILS / bare_seconds,
                "emails/s",
            )
        )

        single = pairs[:SINGLE_EMAILS]
        api, bare = [], []
        for subject, body in single:
            api.append(timed(lambda s=subject, b=body: model.decide_one(s, b))[0] * 1000)
            bare.append(
                timed(lambda s=subject, b=body: model.pipeline.predict_proba([(s, b)]))[0] * 1000
            )
        print(
            f" single email, {SINGLE_EMAILS} calls through TrainedModel.decide_one (target p99 < 10 ms)"
        )
        print(row("p50 latency", percentile(api, 50), "ms", percentile(bare, 50), "lower"))
        print(row("p99 latency", percentile(api, 99), "ms", percentile(bare, 99), "lower"))

        def cold_load() -> object:
            registry._load_pipeline.cache_clear()  # measure a real load from disk, not the in-process cache
            return registry.load(models_dir, trained.version)

        load_s = median_time(cold_load)
        bare_load_s = median_time(lambda: joblib.load(artifact))
        print(
            row("model load time (registry.load, target < 1 s)", load_s, "s", bare_load_s, "lower")
        )
        print(row("artifact size", artifact.stat().st_size / 2**20, "MiB"))
        print(row("peak memory, triage classify process", cli_rss, "MiB", bare_rss, "lower"))
        print(
            row(
                "peak memory, this process",
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "MiB",
            )
        )


if __name__ == "__main__":
    main()
