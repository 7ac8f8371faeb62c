"""What the parts of an email become for staff: names for unnamed parts, uuencoded data decoded,
attached messages as readable text, and HTML shown in full or, past a bound, said to be cut."""

from __future__ import annotations

import binascii
import mimetypes
import re
from dataclasses import dataclass

_TYPES = mimetypes.MimeTypes()  # the standard library's own table only: the same on every host
_EXTRA_EXTENSIONS = {
    "application/ms-tnef": ".dat",
    "application/pgp-encrypted": ".pgp",
    "application/pgp-signature": ".asc",
    "application/pkcs7-mime": ".p7m",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-mime": ".p7m",
    "application/x-pkcs7-signature": ".p7s",
    "application/vnd.ms-outlook": ".msg",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "image/heic": ".heic",
    "image/jpg": ".jpg",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "message/feedback-report": ".txt",
    "message/global": ".eml",
    "message/global-delivery-status": ".txt",
    "message/rfc822": ".eml",
    "text/calendar": ".ics",
    "text/enriched": ".txt",
    "text/rfc822-headers": ".txt",
    "text/vcard": ".vcf",
}
UU_ENCODINGS = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_UU_BEGIN = re.compile(rb"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]{0,255})\r?$", re.MULTILINE)
_UU_BEGIN_TEXT = re.compile(r"^begin[ \t]+[0-7]{3,4}[ \t]+([^\r\n]{1,255})\r?\n", re.MULTILINE)
_UU_END_TEXT = re.compile(r"^end[ \t]*\r?$", re.MULTILINE)
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
MAX_NAME = 120  # characters of a name made from a subject


def unnamed_part_name(content_type: str, stem: str = "attachment") -> str:
    """A name for a part that has none, its extension from its type ("attachment.pdf")."""
    ctype = (content_type or "").lower()
    extension = _EXTRA_EXTENSIONS.get(ctype) or _TYPES.guess_extension(ctype) or ".bin"
    return f"{stem}{extension}"


def eml_name(subject: str) -> str:
    """The download name of an attached message: its subject as a safe file name, then .eml."""
    stem = _UNSAFE_NAME.sub(" ", subject or "").strip(" .")[:MAX_NAME].strip(" .")
    return f"{stem or 'attached message'}.eml"


def uudecode(data: bytes) -> tuple[bytes, str] | None:
    """(bytes, name on the begin line) of uuencoded data, with or without its begin line.

    None when the lines are not uuencoding (without a begin line, every line must decode), so the
    caller keeps the data as it came.
    """
    begin = _UU_BEGIN.search(data)
    name = begin.group(1).decode("utf-8", "replace").strip() if begin else ""
    lines = data[begin.end() if begin else 0 :].splitlines()
    out: list[bytes] = []
    for line in lines:
        line = line.rstrip(b"\r\n")
        if line.strip() == b"end":
            break
        if not line.strip() or line in (b"`", b" "):
            continue
        decoded = _uu_line(line)
        if decoded is None:
            if begin is None:
                return None
            continue  # a damaged line in a marked block: keep the rest
        out.append(decoded)
    if begin is None and not out:
        return None
    return b"".join(out), name


def _uu_line(line: bytes) -> bytes | None:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # encoders that pad or trim lines: decode the bytes the length character promises
        count = (((line[0] - 32) & 63) * 4 + 5) // 3
        try:
            return binascii.a2b_uu(line[:count])
        except binascii.Error:
            return None


@dataclass(frozen=True)
class UuBlock:
    """A uuencoded file found inside a plain-text body."""

    name: str
    data: bytes


def uu_blocks(text: str) -> tuple[str, list[UuBlock]]:
    """The text with each uuencoded block ("begin 644 name" to "end") replaced by a note, and the
    blocks' files; text without one is returned as it is."""
    if "begin " not in text:
        return text, []
    pieces: list[str] = []
    blocks: list[UuBlock] = []
    position = 0
    for begin in _UU_BEGIN_TEXT.finditer(text):
        if begin.start() < position:
            continue
        end = _UU_END_TEXT.search(text, begin.end())
        if end is None:
            break
        decoded = uudecode(text[begin.start() : end.end()].encode("latin-1", "replace"))
        if decoded is None or not decoded[0]:
            continue
        name = decoded[1] or "attachment.bin"
        blocks.append(UuBlock(name, decoded[0]))
        pieces += [
            text[position : begin.start()],
            f"[uuencoded file {name}: kept as an attachment]",
        ]
        position = end.end()
    pieces.append(text[position:])
    return "".join(pieces), blocks


ATTACHED_MARK = "---------- Attached message ----------"
_SHOWN_HEADERS = ("From", "Date", "Subject", "To", "Cc")


def attached_block(headers: dict[str, str], text: str) -> str:
    """An attached message as staff read it under the forwarder's note: its headers, then text."""
    lines = [ATTACHED_MARK]
    lines += [f"{name}: {headers[name]}" for name in _SHOWN_HEADERS if headers.get(name)]
    body = text.strip("\n") or "(the attached message has no text)"
    return "\n" + "\n".join(lines) + "\n\n" + body


def html_cut_note(shown: int, total: int, attachment_name: str) -> str:
    """What staff read where a long HTML part's text stops: how much was shown, where the rest is."""
    return (
        f"\n\n[This HTML part is {total:,} characters long; its text is shown up to character "
        f"{shown:,} only. The whole part is the attachment {attachment_name}, and the raw source "
        "holds the email as it came.]"
    )
