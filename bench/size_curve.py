"""Size curve: training time and quality at 1k, 4k, 20k, 50k and 100k examples of the same content.

The large sets are the training file copied with 10 % of each copy's words dropped (each copy keeps
its writer, so grouped cross-validation still never splits a writer); 1k is every fourth email.
Each model is scored on the held-out test file and the hard set, which it never saw.
`python -m bench size_curve`: 1k, the training file and 20k; with BENCH_FULL=1 also 50k and 100k
(BENCH_SIZES="n,n,..." overrides). The thresholds come from the distinct emails (the copies are
near-copies: near_copies.py), and from a sample of them above training.THRESHOLD_SAMPLE; the model
is fitted on every example, copies included.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from bench.common import REPO, full_profile
from triage.classifier.dataset import (
    FRESH_FILE,
    HARD_FILE,
    TEST_FILE,
    TRAIN_FILE,
    Example,
    load_jsonl,
)
from triage.classifier.evaluation import evaluate
from triage.classifier.training import train


def grown(examples: list[Example], n: int, dropout: float = 0.1, seed: int = 7) -> list[Example]:
    """`n` examples: the originals, then copies with `dropout` of each copy's words left out."""
    if n <= len(examples):
        step = len(examples) / n
        return [examples[int(i * step)] for i in range(n)]
    rng = random.Random(seed)
    out = list(examples)
    copy = 0
    while len(out) < n:
        copy += 1
        for ex in examples[: n - len(out)]:
            words = [w for w in ex.body.split() if rng.random() >= dropout] or ex.body.split()
            out.append(Example(ex.subject, " ".join(words), ex.label, ex.group, f"{ex.id}~{copy}"))
    return out


def cpu_seconds() -> float:
    """CPU seconds used by this process and every descendant so far (live ones from /proc, ended
    ones through their parents' totals), so that a run on a busy machine is still comparable."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            stats[int(entry.name)] = text.rpartition(")")[2].split()
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        fields = stats.get(pid)
        if fields:
            total += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        todo += children.get(pid, [])
    return total / tick


def score(model_examples: list[Example], model: object) -> dict[str, float]:
    """Precision, coverage, macro-F1 and the two costly shares of a model on labelled examples."""
    report = evaluate(
        [e.label for e in model_examples],
        model.decide([e.pair for e in model_examples]),  # type: ignore[attr-defined]
    )
    auto = report["auto_reply"]
    return {
        "precision": auto["precision"],
        "coverage": auto["coverage"],
        "macro_f1": report["macro_f1"],
        "other": auto["other_auto_replied"],
        "staff_only": auto["staff_only_auto_replied"],
    }


def main() -> None:
    """Train at each size, time it, and score each model on the held-out files."""
    base = load_jsonl(REPO / "training_data" / TRAIN_FILE)
    default = "1000,4000,20000,50000,100000" if full_profile() else f"1000,{len(base)},20000"
    sizes = [int(s) for s in os.environ.get("BENCH_SIZES", default).split(",")]
    held_out = {
        name: load_jsonl(REPO / "training_data" / file)
        for name, file in (("test", TEST_FILE), ("hard", HARD_FILE), ("fresh", FRESH_FILE))
    }
    print("== size curve: training time and held-out quality against training-set size ==")
    print(
        "| examples | path | wall s | CPU s | load | "
        + " | ".join(f"{name} prec / cov / F1" for name in held_out)
        + " |"
    )
    print("|---|---|---|---|---|" + "---|" * len(held_out))
    for n in sizes:
        data = grown(base, n)
        start, cpu = time.perf_counter(), cpu_seconds()
        result = train(data, None, f"vsize{n}", n_jobs=2)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        cells = []
        for examples in held_out.values():
            s = score(examples, result.model)
            cells.append(f"{s['precision']:.3f} / {s['coverage']:.3f} / {s['macro_f1']:.3f}")
        path = result.model.metadata["validation"]
        load = os.getloadavg()[1]
        print(
            f"| {n} | {path} | {seconds:.0f} | {cpu:.0f} | {load:.1f} | "
            + " | ".join(cells)
            + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
