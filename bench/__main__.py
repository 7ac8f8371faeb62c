"""`python -m bench`: run every benchmark in turn (or those named on the command line)."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ["classifier", "parse", "retrain", "load"]


def main() -> None:
    """Run the named benchmarks, default all."""
    names = sys.argv[1:] or BENCHMARKS
    for name in names:
        if name not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
