"""Reduce an email to what the centre wrote now: no quoted history, signatures, disclaimers or HTML.

Every step is linear in the input and bounded: the body is cut to MAX_BODY_CHARS and MAX_LINES
first, and each line is judged by anchored patterns on at most its first PROBE_CHARS characters, so
no email can make cleaning slow (a 40 KB body of blank lines once took 30 s in a regex-based reply
parser).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

_HTML_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=False, display_images=False)
_HTML_HINT = re.compile(r"<\s*(html|body|div|p|br|table|span|font|meta)\b", re.IGNORECASE)
_SUBJECT_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv|antw|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_FORWARD_SUBJECT = re.compile(
    r"^\s*((re|aw|sv|antw)\s*(\[\d+\])?\s*:\s*)*(fw|fwd|tr|wg)\s*(\[\d+\])?\s*:", re.I
)
_REFERENCE = re.compile(r"\[?\bIMI-\d{6,}\b\]?", re.IGNORECASE)
_SPACES = re.compile(r"[ \t\u00a0\u200b]+")
_TAG = re.compile(r"<[^<>]{0,2000}>")
# Cleaning is bounded: nobody writes an enquiry longer than this; the rest is pasted logs or
# history.
MAX_BODY_CHARS = 20_000
MAX_LINES = 1_000
PROBE_CHARS = 200  # how much of a line the header, signature and disclaimer patterns look at
MAX_HTML_CHARS = (
    64_000  # HTML converted to text, after <head>, <style>, <script> and comments are dropped
)
MAX_FORWARDS = 3  # nested forwards read (FW: FW: FW: ...)

# Patterns below are matched with .match/.fullmatch on one line's first PROBE_CHARS characters:
# anchored, and with no nested or overlapping repetition, so each costs at most a pass over those
# characters.
_QUOTE_PREFIX = re.compile(r"(?:>[ \t]?)+")
_FORWARD_MARK = re.compile(
    r"-{2,}[ \t]*(?:forwarded|attached)( message)?[ \t]*-{2,}|begin forwarded message:"
    r"|forwarded message:",
    re.IGNORECASE,
)
_ORIGINAL_MARK = re.compile(r"-{2,}[ \t]*original message[ \t]*-{2,}", re.IGNORECASE)
_SEPARATOR = re.compile(r"[_-]{32,}")
_HEADER_FIELD = re.compile(
    r"[* ]*(from|sent|to|cc|bcc|subject|date|reply-to|organization|importance)[ *]*:", re.I
)
_WROTE = re.compile(r"on[ \t].{1,300}", re.IGNORECASE)
# a short line opening with one of these, or one of them alone, ends the message
_SIGN_OFF = re.compile(
    r"(best regards|kind regards|warm regards|all the best|many thanks|best wishes"
    r"|thanks,|thank you,|best,|regards,)"
    r"|(regards|thanks|thank you|cheers|best)[ \t.!,]*$",
    re.IGNORECASE,
)
# a sign-off line is short ("Kind regards, Jane Doe"); a longer "Thanks, that worked ..." is not
SIGN_OFF_CHARS = 30
_SIGNATURE_DELIMITER = re.compile(r"(--|__)|-[A-Za-z][\w .]{0,30}")
_MOBILE_FOOTER = re.compile(
    r"(sent from my|sent from outlook for|get outlook for|sent from mail for"
    r"|sent from yahoo mail)\b.{0,60}",
    re.I,
)
_DISCLAIMER = re.compile(
    r"(caution|disclaimer|warning|confidential|confidentiality)[ \t*]*:|[ \t*]*disclaimer\b"
    r"|(privileged|confidential|private|sensitive|important) (notice|note|information):"
    r"|this (e-?mail|message)( and any (files|attachments))? (is|are|and|may|contains?)\b"
    r"|the information (contained )?in this (e-?mail|message)"
    r"|if you (have )?received this (e-?mail|message) in error",
    re.IGNORECASE,
)


def html_to_text(html: str) -> str:
    """Convert an HTML body to readable plain text (scripts and styles dropped), bounded in size and
    time."""
    return visible_html_to_text(visible_html(html)[:MAX_HTML_CHARS])


def visible_html(html: str) -> str:
    """HTML without what a reader never sees (<head>, <style>, <script>, comments)."""
    return _drop_invisible(html or "")


def visible_html_to_text(visible: str) -> str:
    """Readable text of HTML that visible_html has already stripped (its cost grows with its
    length: callers bound it)."""
    try:
        text: str = get_text(visible, _HTML_CONFIG)
        return text
    # markup the converter cannot lay out: keep its words
    except (
        RecursionError,
        ValueError,
        TypeError,
    ):
        return _TAG.sub(" ", visible)


def _drop_invisible(html: str) -> str:
    """HTML without comments and <head>, <style> and <script> elements (one pass with str.find)."""
    lower = html.lower()
    pieces, index = [], 0
    closers = {"<!--": "-->", "<head": "</head", "<style": "</style", "<script": "</script"}
    while index < len(html):
        starts = [(lower.find(opener, index), opener) for opener in closers]
        found = [(at, opener) for at, opener in starts if at >= 0]
        if not found:
            pieces.append(html[index:])
            break
        at, opener = min(found)
        pieces.append(html[index:at])
        end = lower.find(closers[opener], at + len(opener))
        if end < 0:
            break  # unterminated: the rest is invisible
        close = lower.find(">", end)
        index = len(html) if close < 0 else close + 1
    return " ".join(pieces)


def looks_like_html(text: str) -> bool:
    """True when a body is HTML markup rather than plain text."""
    return bool(_HTML_HINT.search(text[:5000]))


def clean_subject(subject: str) -> str:
    """Drop reply/forward prefixes and our ticket reference from a subject."""
    subject = _REFERENCE.sub(" ", (subject or "")[:2000])
    subject = _SUBJECT_PREFIX.sub("", subject)
    return _SPACES.sub(" ", subject).strip()


def is_forward(subject: str) -> bool:
    """True when a subject says the email forwards another (FW:, Fwd:, TR:, WG:, after any Re:)."""
    return bool(_FORWARD_SUBJECT.match((subject or "")[:PROBE_CHARS]))


@dataclass
class _Segment:
    """Lines between two history markers; `kind` says what opened it (start, forward or reply
    history)."""

    kind: str
    subject: str = ""
    lines: list[str] = field(default_factory=list)


def _bounded_lines(body: str) -> list[str]:
    """The body's first MAX_LINES lines (of its first MAX_BODY_CHARS characters), stripped, blank
    runs as one."""
    body = unicodedata.normalize("NFC", (body or "")[:MAX_BODY_CHARS])
    lines: list[str] = []
    for raw in body.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if line or (lines and lines[-1]):
            lines.append(line)
            if len(lines) >= MAX_LINES:
                break
    return lines


def _unquoted(line: str) -> tuple[bool, str]:
    """(is quoted, the line without its leading '>' markers)."""
    match = _QUOTE_PREFIX.match(line, 0, PROBE_CHARS)
    return (True, line[match.end() :]) if match else (False, line)


def _is_header_field(line: str) -> bool:
    return bool(line) and _HEADER_FIELD.match(line[:PROBE_CHARS]) is not None


def _marker(lines: list[str], i: int, original_is_forward: bool) -> tuple[str, int]:
    """('forward' | 'reply' | '', lines the marker itself takes) for the line at i."""
    line = lines[i]
    probe = line[:PROBE_CHARS]
    if len(line) <= PROBE_CHARS and _FORWARD_MARK.fullmatch(probe):
        return "forward", 1
    if len(line) <= PROBE_CHARS and _ORIGINAL_MARK.fullmatch(probe):
        return ("forward" if original_is_forward else "reply"), 1
    history = "forward" if original_is_forward else "reply"
    if len(line) <= PROBE_CHARS and _SEPARATOR.fullmatch(probe):
        return history, 1
    if _WROTE.fullmatch(line[: PROBE_CHARS * 2]) and len(line) <= PROBE_CHARS * 2:
        if line.endswith("wrote:"):
            return "reply", 1
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if len(nxt) <= PROBE_CHARS and nxt.endswith("wrote:"):
            return "reply", 2
    # an Outlook block: two header fields in a row (a blank line between allowed)
    if _is_header_field(line):
        following = [lines[j] for j in range(i + 1, min(i + 3, len(lines)))]
        nxt = (
            following[0]
            if following and following[0]
            else (following[1] if len(following) > 1 else "")
        )
        if _is_header_field(nxt):
            return history, 0
    return "", 0


def _header_block(lines: list[str], i: int) -> tuple[str, int]:
    """(the Subject value, index after) for the header fields (and blank lines) starting at i."""
    subject, j = "", i
    while j < len(lines) and j < i + 20 and (not lines[j] or _is_header_field(lines[j])):
        name, _, value = lines[j].partition(":")
        if name.strip(" *").lower() == "subject":
            subject = clean_subject(value)
        j += 1
    return subject, j


def _segments(lines: list[str], original_is_forward: bool) -> list[_Segment]:
    """Split unquoted lines at history markers; quoted lines stay in their segment (dropped
    later)."""
    segments = [_Segment("start")]
    i = 0
    while i < len(lines):
        quoted, _text = _unquoted(lines[i])
        kind, used = ("", 0) if quoted or not lines[i] else _marker(lines, i, original_is_forward)
        if not kind:
            segments[-1].lines.append(lines[i])
            i += 1
            continue
        subject, i = _header_block(lines, i + used)
        segments.append(_Segment(kind, subject))
    return segments


def _own_text(lines: list[str], keep_quoted: bool = False) -> list[str]:
    """A segment's own words: no quoted lines, cut at the signature or a mobile footer, disclaimers
    dropped.

    With `keep_quoted` (a forward, whose '>' lines are the forwarded message, not our history),
    quoted lines are kept without their markers, also after the forwarder's signature.
    """
    out: list[str] = []
    in_disclaimer = signed = False
    for line in lines:
        if not line:
            in_disclaimer = False
            if out and out[-1]:
                out.append("")
            continue
        quoted, text = _unquoted(line)
        if quoted and keep_quoted and text.strip() and not _is_header_field(text.lstrip()):
            out.append(text)
        if quoted or in_disclaimer or signed:
            continue
        probe = line[:PROBE_CHARS]
        if (
            any(out)
            and len(line) <= SIGN_OFF_CHARS
            and (_SIGN_OFF.match(line) or _SIGNATURE_DELIMITER.fullmatch(line))
        ) or (_MOBILE_FOOTER.fullmatch(probe) and len(line) <= PROBE_CHARS):
            if not keep_quoted:
                break
            signed = True
            continue
        if _DISCLAIMER.match(probe):
            in_disclaimer = True
            continue
        out.append(line)
    while out and not out[-1]:
        out.pop()
    return out


def latest_reply(body: str, forwarded: bool = False) -> str:
    """The newest part of a plain-text body: quoted history, signature and disclaimer removed.

    A forwarded email keeps the forwarder's note and the forwarded message (with its subject); reply
    history ("On ... wrote:", an Outlook header block, "-----Original Message-----" unless
    `forwarded`) is cut. When the newest part is empty (a reply written below the quote), the first
    part with words is used.
    """
    segments = _segments(_bounded_lines(body), forwarded)
    kept: list[str] = []
    forwards = 0
    for segment in segments:
        words = _own_text(segment.lines, keep_quoted=forwarded and segment.kind != "reply")
        if segment.kind == "forward" and forwards < MAX_FORWARDS:
            forwards += 1
            kept += ["", segment.subject, *words] if segment.subject else ["", *words]
            continue
        if any(kept):
            break
        kept += words
    text = "\n".join(_SPACES.sub(" ", line).strip() for line in kept)
    return "\n".join(_collapse_blank_runs(text.split("\n"))).strip()


def _collapse_blank_runs(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return out


def clean_body(body: str, html: str | None = None, forwarded: bool = False) -> str:
    """Clean a body, converting HTML first when the mail has no plain-text version."""
    if (not body or not body.strip()) and html:
        body = html_to_text(html)
    elif body and looks_like_html(body):
        body = html_to_text(body)
    return latest_reply(body, forwarded)


def model_text(subject: str, body: str) -> str:
    """The text the classifier sees: cleaned subject and cleaned body."""
    return cleaned_text(subject, clean_body(body, forwarded=is_forward(subject)))


def cleaned_text(subject: str, cleaned_body: str) -> str:
    """model_text for a body the caller has already cleaned (with clean_body, once)."""
    return f"{clean_subject(subject)}\n{cleaned_body}".strip()
