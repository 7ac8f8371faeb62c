"""Reduce an email to what the centre wrote now: no quoted history, signatures, disclaimers or HTML."""

from __future__ import annotations

import re
import unicodedata

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from mailparser_reply import EmailReplyParser

_PARSER = EmailReplyParser(languages=["en"])
_HTML_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=False, display_images=False)
_HTML_HINT = re.compile(r"<\s*(html|body|div|p|br|table|span|font|meta)\b", re.IGNORECASE)
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv|antw|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_REFERENCE = re.compile(r"\[?\bIMI-\d{6,}\b\]?", re.IGNORECASE)
_QUOTED_LINE = re.compile(r"^\s*>.*$", re.MULTILINE)
_MOBILE_FOOTER = re.compile(r"^\s*(sent from my \w+.*|get outlook for \w+.*|sent from outlook for \w+.*)$", re.I | re.M)
_BLANK_RUNS = re.compile(r"\n\s*\n+")
_SPACES = re.compile(r"[ \t\u00a0]+")
# Cleaning is bounded: nobody writes an enquiry longer than this; the rest is pasted logs or history.
MAX_BODY_CHARS = 20_000


def html_to_text(html: str) -> str:
    """Convert an HTML body to readable plain text (scripts and styles dropped)."""
    return get_text(html, _HTML_CONFIG)


def looks_like_html(text: str) -> bool:
    """True when a body is HTML markup rather than plain text."""
    return bool(_HTML_HINT.search(text[:5000]))


def clean_subject(subject: str) -> str:
    """Drop reply/forward prefixes and our ticket reference from a subject."""
    subject = _REFERENCE.sub(" ", subject or "")
    subject = _SUBJECT_PREFIX.sub("", subject)
    return _SPACES.sub(" ", subject).strip()


def latest_reply(body: str) -> str:
    """The newest part of a plain-text body: quoted history, signature and disclaimer removed."""
    body = unicodedata.normalize("NFC", (body or "")[:MAX_BODY_CHARS]).replace("\r\n", "\n").replace("\r", "\n")
    try:
        replies = _PARSER.read(text=body).replies
    except Exception:  # the parser is regex-based; a pathological input must not stop classification
        replies = []
    text = next((r.body for r in replies if r.body and _QUOTED_LINE.sub("", r.body).strip()), body)
    text = _MOBILE_FOOTER.sub("", _QUOTED_LINE.sub("", text))
    text = _BLANK_RUNS.sub("\n\n", _SPACES.sub(" ", text))
    return text.strip()


def clean_body(body: str, html: str | None = None) -> str:
    """Clean a body, converting HTML first when the mail has no plain-text version."""
    if (not body or not body.strip()) and html:
        body = html_to_text(html)
    elif body and looks_like_html(body):
        body = html_to_text(body)
    return latest_reply(body)


def model_text(subject: str, body: str) -> str:
    """The text the classifier sees: cleaned subject and cleaned body."""
    return f"{clean_subject(subject)}\n{clean_body(body)}".strip()
