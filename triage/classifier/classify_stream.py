"""The `triage classify` contract: JSON Lines in, one JSON line out per input, in order."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, TextIO

from triage.classifier.model import TrainedModel

BATCH = 512


def parse_line(number: int, line: str) -> tuple[Any, tuple[str, str] | None, str | None]:
    """Parse one input line into (id, (subject, body), error); id falls back to the line number."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return number, None, f"line {number}: not valid JSON ({exc.msg})"
    if not isinstance(row, dict):
        return number, None, f"line {number}: expected a JSON object"
    ident = row.get("id", number)
    if ident is None or isinstance(ident, (dict, list)):
        return number, None, f"line {number}: id must be a string or number"
    subject, body = row.get("subject", ""), row.get("body", "")
    if "subject" not in row and "body" not in row:
        return ident, None, f"line {number}: needs a subject or a body"
    for name, value in (("subject", subject), ("body", body), ("from", row.get("from", ""))):
        if not isinstance(value, str):
            return ident, None, f"line {number}: {name} must be a string"
    return ident, (subject, body), None


def classify_lines(
    lines: Iterable[str], model: TrainedModel, routing: Mapping[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield one result (or error) object per non-blank input line, batching the model calls."""
    numbered = ((n, line) for n, line in enumerate(lines, 1) if line.strip())
    while True:
        chunk = list(islice(numbered, BATCH))
        if not chunk:
            return
        parsed = [parse_line(n, line) for n, line in chunk]
        pairs = [pair for _id, pair, _err in parsed if pair is not None]
        decisions = iter(model.decide(pairs, routing))
        for ident, pair, error in parsed:
            if pair is None:
                yield {"id": ident, "error": error}
            else:
                yield {"id": ident, **next(decisions).as_json()}


def run(
    stdin: TextIO, stdout: TextIO, model: TrainedModel, routing: Mapping[str, str] | None = None
) -> int:
    """Classify stdin to stdout; returns how many lines failed."""
    failed = 0
    for result in classify_lines(stdin, model, routing):
        failed += "error" in result
        stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    stdout.flush()
    return failed
