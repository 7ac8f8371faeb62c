"""`python -m bench [NAME ...]`: run the benchmarks (all by default), quick sizes unless BENCH_FULL=1."""

from __future__ import annotations

import argparse
import importlib

from bench.common import full_profile

# name: (what it measures, rough time on 2 cores: quick profile, full profile)
BENCHMARKS: dict[str, tuple[str, str, str]] = {
    "classifier": (
        "classify CLI throughput, single-email latency (p50/p99), model load time, size and memory, "
        "each against a bare scikit-learn Pipeline",
        "~20 s",
        "~1 min",
    ),
    "parse": (
        "the parser on hostile 1 MiB shapes, then CPU from bytes to decision (parse, clean, classify) for hostile "
        "mail up to INBOUND_MAX_BYTES against plain mail of the same size, and the worst shape against the 1 s budget",
        "~10 s",
        "~10 s (same sizes)",
    ),
    "retrain": (
        "retraining on resolved tickets (quick 1,000, full 50,000) against one bare Pipeline fit",
        "~1.5 min",
        "~5 min",
    ),
    "delivery": (
        "outbox delivery to a slow SMTP relay (aiosmtpd): OUTBOX_CONNECTIONS connections against one, "
        "every reply exactly once",
        "~30 s",
        "~1.5 min",
    ),
    "size_curve": (
        "training time (wall and CPU) and held-out quality (test, hard and fresh files) against the "
        "number of training examples: 1k, the training file, 20k (full: also 50k and 100k)",
        "~3 min",
        "~12 min",
    ),
    "load": (
        "emails POSTed to the webhook under gunicorn on SQLite (and PostgreSQL with BENCH_DATABASE_URL): accept "
        "latency, processing rate, lost and doubled mail, against bare floors; ends with a RESULT line",
        "~40 s (~1 min with PostgreSQL)",
        "~10 min (3,000 emails per database)",
    ),
}


def _description() -> str:
    lines = [
        "benchmarks (quick profile by default; BENCH_FULL=1 for the full sizes). The run first trains one model",
        "(about 1 minute on 2 cores) that every benchmark uses; the quick profile takes under 5 minutes in all.",
        "",
    ]
    for name, (what, quick, full) in BENCHMARKS.items():
        lines.append(f"  {name:<11} {what}")
        lines.append(f"  {'':<11} takes {quick} quick, {full} full")
    lines += [
        "",
        "Each prints ratios against a baseline measured in the same run; nothing is asserted.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run the named benchmarks, default all."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=_description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    print(f"profile: {'full' if full_profile() else 'quick (BENCH_FULL=1 for the full sizes)'}")
    for name in args.names or BENCHMARKS:
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
