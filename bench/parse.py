"""Parser benchmark: hostile shapes of the same size as a plain email, parsed in one process.

Time per message for deep nesting, thousands of parts, a megabyte header, many headers, a long base64
attachment and random bytes, each as a ratio to a plain-text email of the same size measured in the
same run (so the figure says how much worse than ordinary mail a hostile message can be). Sizes: 1 MiB;
with BENCH_FULL=1 also 10 MiB (the default INBOUND_MAX_BYTES) for the plain baseline and the worst shape.
"""

from __future__ import annotations

import base64
import contextlib
import random

from bench.common import full_profile, median_time
from triage.mail.parse import UnparseableEmail, parse

HEAD = b"From: Jo <jo@college.example>\r\nTo: support@imi.example\r\nMessage-ID: <bench@college.example>\r\n"


def _fill(prefix: bytes, unit: bytes, size: int, suffix: bytes = b"") -> bytes:
    return prefix + unit * max(1, (size - len(prefix) - len(suffix)) // len(unit)) + suffix


def shapes(size: int) -> dict[str, bytes]:
    """Raw messages of about `size` bytes: the plain baseline first, then the hostile shapes."""
    rng = random.Random(3)
    nest = b"".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode() for i in range(2000))
    attachment = base64.encodebytes(rng.randbytes(size * 3 // 4 - 2000))
    return {
        "plain text (baseline)": _fill(HEAD + b"Subject: exam frozen\r\n\r\n", b"the exam froze on question 12 ", size),
        "deep nesting (2,000 levels)": _fill(HEAD + b"Subject: nested\r\n" + nest, b"x" * 76 + b"\r\n", size),
        "many parts": _fill(
            HEAD + b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
            b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n",
            size,
            b"--b--\r\n",
        ),
        "one huge header": _fill(HEAD + b"Subject: ", b"A", size, b"\r\n\r\nbody\r\n"),
        "many headers": _fill(HEAD + b"Subject: h\r\n", b"X-Hop: relay.example\r\n", size, b"\r\nbody\r\n"),
        "base64 attachment": HEAD + b"Subject: scan\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b--\r\n",
        "random bytes": HEAD + b"Subject: noise\r\n\r\n" + rng.randbytes(size),
    }


def _parse_or_reject(raw: bytes) -> None:
    with contextlib.suppress(UnparseableEmail):  # random bytes may be refused: that is a result too
        parse(raw)


def _run(messages: dict[str, bytes], repeat: int) -> dict[str, float]:
    """Median seconds per shape, printed with the ratio to the first (the plain baseline)."""
    times: dict[str, float] = {}
    for name, raw in messages.items():
        times[name] = median_time(lambda raw=raw: _parse_or_reject(raw), repeat)
        ratio = times[name] / next(iter(times.values()))
        print(f"  {name:30} {len(raw) / (1 << 20):5.1f} MiB  {times[name] * 1000:8.1f} ms   ratio {ratio:5.2f}")
    return times


def main() -> None:
    """Every shape at 1 MiB; then the baseline and the slowest shape at 10 MiB (INBOUND_MAX_BYTES)."""
    print("== parse: hostile shapes of 1 MiB, median of 5 ==")
    times = _run(shapes(1 << 20), 5)
    worst = max(times, key=times.__getitem__)
    if not full_profile():
        print(f"slowest shape: {worst} (BENCH_FULL=1 repeats it at 10 MiB)")
        return
    print(f"== parse: the plain baseline and the slowest shape ({worst}) at 10 MiB, median of 2 ==")
    big = shapes(10 << 20)
    _run({name: big[name] for name in dict.fromkeys([next(iter(big)), worst])}, 2)


if __name__ == "__main__":
    main()
