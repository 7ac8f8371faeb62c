"""Benchmarks run by `make bench`: they print figures and ratios against a baseline from the same run."""
