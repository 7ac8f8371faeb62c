"""Find a forwarded message inside an email body, so staff see the forwarder's note and the forward
in full."""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKER = re.compile(
    r"^[ \t>]*(?:"
    r"-{2,}[ \t]*"
    r"(?:original message|forwarded message|attached message|message transféré"
    r"|weitergeleitete nachricht)"
    r"[ \t]*-{2,}[ \t]*$"
    r"|begin forwarded message:[ \t]*$"
    r"|_{10,}[ \t]*\n[ \t>]*(?:from|de|von):"
    r")",
    re.IGNORECASE | re.MULTILINE,
)
_SCAN_LIMIT = 200_000  # a marker further down than this is someone's pasted log, not a forward


@dataclass(frozen=True)
class Forward:
    """A body split at its first forward marker: the forwarder's own note, then the forwarded
    message whole."""

    note: str
    forwarded: str


def split_forward(body: str) -> Forward | None:
    """The note and the forwarded message of a forwarded email's body, or None when it forwards
    nothing."""
    text = (body or "").replace("\r\n", "\n")
    match = _MARKER.search(text, 0, min(len(text), _SCAN_LIMIT))
    if match is None:
        return None
    return Forward(
        note=text[: match.start()].strip("\n"), forwarded=text[match.start() :].strip("\n")
    )
