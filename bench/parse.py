"""Hostile-mail benchmark: CPU time from bytes to decision (parse, clean, classify) for hostile shapes.

Part 1 times the parser alone on hostile shapes of 1 MiB against a plain-text email of the same size.
Part 2 times the whole path an inbound email takes before any database work (parse, clean, classify)
on the shapes a security review used to stall workers (quadratic cleaning, quadratic header parsing,
unbounded HTML conversion) and more, each against a plain email of the same size measured in the same
run, and reports the worst shape against the budget: any email up to INBOUND_MAX_BYTES in < 1 s of CPU.
`tests/test_hostile_mail.py` asserts the same budget on the same shapes.
"""

from __future__ import annotations

import base64
import contextlib
import random
import statistics
import sys
import time
from collections.abc import Callable

from bench.common import shared_model
from triage.classifier.cleaning import clean_body, model_text
from triage.mail.parse import UnparseableEmail, parse

BUDGET_SECONDS = 1.0
MAX_BYTES = 10 * 1024 * 1024  # the default INBOUND_MAX_BYTES
HEAD = b"From: Jo <jo@college.example>\r\nTo: support@imi.example\r\nMessage-ID: <bench@college.example>\r\n"
_TO = b"To: support@imi.example\r\nMessage-ID: <hostile@college.example>\r\n"


def _fill(prefix: bytes, unit: bytes, size: int, suffix: bytes = b"") -> bytes:
    return prefix + unit * max(1, (size - len(prefix) - len(suffix)) // len(unit)) + suffix


def plain(size: int) -> bytes:
    """An ordinary plain-text email of about `size` bytes (the baseline)."""
    return _fill(HEAD + b"Subject: exam frozen\r\n\r\n", b"the exam froze on question 12 ", size)


def shapes(size: int) -> dict[str, bytes]:
    """Raw messages of about `size` bytes: the plain baseline first, then the hostile shapes for the parser."""
    rng = random.Random(3)
    nest = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
        for i in range(2000)
    )
    attachment = base64.encodebytes(rng.randbytes(size * 3 // 4 - 2000))
    return {
        "plain text (baseline)": plain(size),
        "deep nesting (2,000 levels)": _fill(
            HEAD + b"Subject: nested\r\n" + nest, b"x" * 76 + b"\r\n", size
        ),
        "many parts": _fill(
            HEAD + b"Subject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
            b"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n",
            size,
            b"--b--\r\n",
        ),
        "one huge header": _fill(HEAD + b"Subject: ", b"A", size, b"\r\n\r\nbody\r\n"),
        "many headers": _fill(
            HEAD + b"Subject: h\r\n", b"X-Hop: relay.example\r\n", size, b"\r\nbody\r\n"
        ),
        "base64 attachment": HEAD
        + b"Subject: scan\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b--\r\n",
        "random bytes": HEAD + b"Subject: noise\r\n\r\n" + rng.randbytes(size),
    }


def _text_mail(
    body: bytes, subject: bytes = b"exam frozen", sender: bytes = b"Jo <jo@college.example>"
) -> bytes:
    return b"From: " + sender + b"\r\n" + _TO + b"Subject: " + subject + b"\r\n\r\n" + body


def hostile_emails(size: int = MAX_BYTES) -> dict[str, bytes]:
    """Whole emails that once stalled a worker (the review's shapes at their sizes), and more up to `size`."""
    nest = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'.encode()
        for i in range(5000)
    )
    html_head = (
        b"From: jo@college.example\r\n" + _TO + b"Subject: html\r\nContent-Type: text/html\r\n\r\n"
    )
    return {
        "blank lines (a + CRLF*20000 + b)": _text_mail(b"a" + b"\r\n" * 20000 + b"b"),
        "'On ' * 6000": _text_mail(b"On " * 6000),
        "80 KB From display name": _text_mail(
            b"x", sender=b'"' + b"A " * 40_000 + b'" <jo@college.example>'
        ),
        "160 KB From display name": _text_mail(
            b"x", sender=b"B" * 160_000 + b" <jo@college.example>"
        ),
        "9 MB folded Subject": _text_mail(b"body", subject=b"word\r\n " * (9_000_000 // 7)),
        "8 MB HTML-only body": html_head + b"<p>exam<br>frozen</p>" * (8_000_000 // 22),
        "HTML nested 1M deep": html_head + b"<div>" * (size // 5 - 100),
        "HTML table of 10 MB": _fill(
            html_head + b"<table>", b"<tr><td>a</td><td>b</td></tr>", size
        ),
        "'>' quote lines": _fill(
            _TO + b"From: jo@college.example\r\nSubject: q\r\n\r\n", b"> " * 500 + b"\r\n", size
        ),
        "one 10 MB line of '>'": _text_mail(b">" * (size - 200)),
        "'On ... wrote:' lines": _fill(_text_mail(b""), b"On Mon, Jo wrote:\r\n> x\r\n", size),
        "header-like lines": _fill(_text_mail(b""), b"From: a\r\nSent: b\r\n", size),
        "many encoded-words": _text_mail(b"x", subject=b"=?utf-8?b?w6k=?= " * (size // 17 - 10)),
        "encoded CR/LF display name": _text_mail(
            b"x",
            sender=b"=?utf-8?b?"
            + base64.b64encode(b'"Name\r\nBcc: x@evil.example"')
            + b"?= <crlf@centre.example>",
        ),
        "10,000 To recipients": _text_mail(b"x").replace(
            b"To: support", b"To: " + b'"A B" <a@b.example>, ' * 10_000 + b"support", 1
        ),
        "deep nesting (5,000 levels)": _fill(
            b"From: jo@college.example\r\n" + _TO + nest, b"x" * 76 + b"\r\n", size
        ),
        "many parts (10 MB)": _fill(
            b"From: jo@college.example\r\n"
            + _TO
            + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n",
            size,
        ),
        "many headers (10 MB)": _fill(
            b"From: jo@college.example\r\n" + _TO, b"X-Hop: relay\r\n", size, b"\r\nbody"
        ),
        "quoted-printable soft breaks": b"From: jo@college.example\r\n"
        + _TO
        + b"Subject: qp\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        + b"=\r\n" * (size // 3 - 100),
        "signature-like lines": _fill(
            _text_mail(b"hello\r\n"), b"Thanks,\r\n-- \r\nSent from my phone\r\n", size
        ),
        **_attached_shapes(size),
    }


def _attached_shapes(size: int) -> dict[str, bytes]:
    """Attached messages and charsets that make the parser work harder (issue 25)."""
    head = b"From: jo@college.example\r\n" + _TO + b"Subject: fw\r\n"
    inner = b"From: a@x.example\r\nSubject: s\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n"
    nested = inner
    for level in range(60):  # each level a multipart holding the level below as message/rfc822
        nested = (
            f"From: l{level}@x.example\r\nContent-Type: multipart/mixed; boundary=n{level}\r\n\r\n"
            f"--n{level}\r\nContent-Type: message/rfc822\r\n\r\n".encode()
            + nested
            + f"\r\n--n{level}--\r\n".encode()
        )
    rng = random.Random(25)
    mislabelled = b"".join(
        b"--b\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n"
        + rng.randbytes(size // 440).replace(b"--b", b"xxx")  # 5 MB of undecodable text in all
        + b"\r\n"
        for _ in range(200)
    )
    return {
        "60 nested attached messages": head + nested,
        "200 attached messages (10 MB)": _fill(
            head + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n",
            b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"<p>" * 20_000 + b"\r\n",
            size,
        ),
        "200 mislabelled charset parts (5 MB)": head
        + b"Content-Type: multipart/mixed; boundary=b\r\n\r\n"
        + mislabelled
        + b"--b--\r\n",
    }


def process(raw: bytes, classify: Callable[[str, str], object] | None = None) -> None:
    """What an inbound email costs before database work: parse, clean (stored text), classify."""
    try:
        email = parse(raw)
    except UnparseableEmail:
        return
    clean_body(email.text, email.html)
    if classify is not None:
        classify(email.subject, email.text)
    else:
        model_text(email.subject, email.text)


def cpu_seconds(func: Callable[[], object]) -> float:
    """CPU seconds (this process) one call takes."""
    start = time.process_time()
    func()
    return time.process_time() - start


def _parse_or_reject(raw: bytes) -> None:
    with contextlib.suppress(UnparseableEmail):  # random bytes may be refused: that is a result too
        parse(raw)


def _run(messages: dict[str, bytes], repeat: int) -> dict[str, float]:
    """Median CPU seconds per shape, printed with the ratio to the first (the plain baseline)."""
    times: dict[str, float] = {}
    for name, raw in messages.items():
        times[name] = statistics.median(
            cpu_seconds(lambda raw=raw: _parse_or_reject(raw)) for _ in range(repeat)
        )
        ratio = times[name] / next(iter(times.values()))
        print(
            f"  {name:30} {len(raw) / (1 << 20):5.1f} MiB  {times[name] * 1000:8.1f} ms   ratio {ratio:5.2f}"
        )
    return times


def _classifier() -> Callable[[str, str], object]:
    """The run's model (classification cost is per email)."""
    return shared_model().decide_one


def main() -> None:
    """Parser alone on 1 MiB shapes; then the whole path on every hostile email, against plain mail."""
    print("== parse: hostile shapes of 1 MiB, parser only, CPU, median of 3 ==")
    _run(shapes(1 << 20), 3)
    print(
        "== bytes to decision (parse + clean + classify), CPU seconds, median of 3, vs plain mail of the same size =="
    )
    classify = _classifier()
    baselines: dict[int, float] = {}
    worst, worst_time = "", 0.0
    for name, raw in hostile_emails().items():
        bucket = min(
            MAX_BYTES, max(1 << 16, 1 << (len(raw) - 1).bit_length())
        )  # plain mail of about its size
        if bucket not in baselines:
            baseline_raw = plain(bucket)
            try:
                parse(baseline_raw)
            except UnparseableEmail as exc:
                sys.exit(f"baseline failed ({exc}); benchmark aborted")
            baselines[bucket] = statistics.median(
                cpu_seconds(lambda b=baseline_raw: process(b, classify)) for _ in range(3)
            )
        spent = statistics.median(
            cpu_seconds(lambda raw=raw: process(raw, classify)) for _ in range(3)
        )
        ratio = spent / baselines[bucket] if baselines[bucket] else float("inf")
        print(
            f"  {name:36} {len(raw) / (1 << 20):6.2f} MiB  {spent * 1000:7.1f} ms CPU   "
            f"(plain {bucket / (1 << 20):.2f} MiB: {baselines[bucket] * 1000:6.1f} ms; ratio {ratio:5.2f})"
        )
        if spent > worst_time:
            worst, worst_time = name, spent
    verdict = "within" if worst_time < BUDGET_SECONDS else "OVER"
    print(
        f"  worst shape: {worst}: {worst_time * 1000:.1f} ms CPU, {verdict} the {BUDGET_SECONDS:.0f} s budget"
    )


if __name__ == "__main__":
    main()
