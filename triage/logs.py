"""Log lines for operators: timestamp, level and logger, with secrets and mail content scrubbed.

No log line carries SQL parameters (the engines hide them), API tokens, hashes, email addresses or
raw mail: `scrub` removes what slips into a message or an exception's text.
"""

from __future__ import annotations

import logging
import re
import sys

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_SCRUBBERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"imi_[A-Za-z0-9_-]{6,}"), "<token>"),  # our API tokens (tokens.PREFIX)
    (re.compile(r"(?i)bearer\s+\S+"), "Bearer <token>"),
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), "<hash>"),
    (re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"), "<address>"),
    (re.compile(r"\[parameters: .*?\](?=\s|$)", re.DOTALL), "[parameters hidden]"),
    (re.compile(r"(DETAIL:\s+)[^\n]*"), r"\1<hidden>"),  # PostgreSQL echoes the failing values
    (re.compile(r"\bb(['\"]).{24,}?\1"), "<bytes>"),  # raw mail in a bytes literal
)


def scrub(text: str) -> str:
    """`text` without tokens, hashes, addresses, SQL parameters or raw mail."""
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


class ScrubbingFormatter(logging.Formatter):
    """The text format (timestamp, level, logger), scrubbed, tracebacks included."""

    def format(self, record: logging.LogRecord) -> str:
        """Render a record as one scrubbed text entry."""
        return scrub(super().format(record))


_OURS = "_triage_handler"


def configure_text_logging(level: int = logging.INFO) -> None:
    """Send the service's log records at `level` and above, and other libraries' warnings, to
    stderr as scrubbed text lines (the default)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter(TEXT_FORMAT))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not getattr(h, _OURS, False)] + [handler]
    logging.getLogger("triage").setLevel(level)
