"""Helpers shared by the benchmarks: timing, percentiles, and one trained model for the whole run."""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from triage.classifier.model import TrainedModel

REPO = Path(__file__).resolve().parent.parent


_models: dict[int, TrainedModel] = {}


def migrated_engine(url: str) -> Engine:
    """An engine on a freshly migrated database (PostgreSQL: its public schema emptied first)."""
    from sqlalchemy import text

    from triage import schema
    from triage.database import make_engine

    engine = make_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    schema.upgrade(engine)
    return engine


def shared_model(every: int = 1) -> TrainedModel:
    """The model every benchmark in this run uses: `flask triage train`'s training on the training file
    (every `every`-th email when more than 1, for tests), trained once per process and then reused."""
    if every not in _models:
        from triage.classifier.dataset import TRAIN_FILE, load_jsonl
        from triage.classifier.training import train

        examples = load_jsonl(REPO / "training_data" / TRAIN_FILE)[::every]
        print(
            f"  [training the benchmark model on {len(examples)} emails, once for the whole run]",
            flush=True,
        )
        _models[every] = train(examples, None, "vbench", n_jobs=2).model
    return _models[every]


def full_profile() -> bool:
    """True when BENCH_FULL=1 asks for the full benchmark sizes (default: the quick profile)."""
    return os.environ.get("BENCH_FULL", "") == "1"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of values, by nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def wait_for_http(port: int, proc: subprocess.Popen[bytes]) -> None:
    """Wait until a server started as `proc` answers GET /healthz on the loopback port (raises if it dies)."""
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Run func once; return (seconds, result)."""
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def median_time(func: Callable[[], Any], repeat: int = 5) -> float:
    """Median seconds over `repeat` runs."""
    return statistics.median(timed(func)[0] for _ in range(repeat))


def sample_emails(n: int, seed: int = 7) -> list[dict[str, str]]:
    """n emails drawn (with replacement) from the training and test files, with unique ids."""
    rows = []
    for name in ("train.jsonl", "test.jsonl"):
        rows += [
            json.loads(line) for line in (REPO / "training_data" / name).read_text().splitlines()
        ]
    rng = random.Random(seed)
    return [
        {"id": f"e{i}", "subject": r["subject"], "body": r["body"]}
        for i, r in enumerate(rng.choices(rows, k=n))
    ]


def row(
    name: str, value: float, unit: str, baseline: float | None = None, better: str = "higher"
) -> str:
    """One printed result line, with the ratio to the baseline when there is one."""
    text = f"  {name:48} {value:12.3f} {unit}"
    if baseline:
        ratio = value / baseline
        text += f"   (baseline {baseline:.3f}; ratio {ratio:.2f}, {better} is better)"
    return text
