"""Content-Disposition for downloads (RFC 6266): an ASCII fallback name and the real name as
UTF-8."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

MAX_NAME = 150


def attachment_disposition(filename: str, fallback: str = "attachment") -> str:
    """`attachment; filename="ascii"; filename*=UTF-8''percent-encoded` for any file name.

    Every browser since 2011 uses filename*; the plain filename (accents folded, other characters
    dropped) serves old clients. Control characters, quotes, backslashes and path separators are
    removed from both, so the header can never be broken or point at a folder.
    """
    name = "".join(
        ch for ch in (filename or "") if unicodedata.category(ch)[0] != "C" and ch not in '"\\/'
    )
    name = name.strip(" .")[:MAX_NAME] or fallback
    stem, dot, suffix = name.rpartition(".") if "." in name else (name, "", "")
    ascii_stem, ascii_suffix = _ascii(stem), _ascii(suffix)
    ascii_name = (ascii_stem or fallback) + (f".{ascii_suffix}" if dot and ascii_suffix else "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _ascii(text: str) -> str:
    """Text with accents folded and anything but letters, digits, dot, dash, underscore and space
    dropped."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded if ch.isalnum() or ch in "._- ").strip(" .")
