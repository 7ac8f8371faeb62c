"""Which attachments staff may view in the browser: images and PDFs, recognised by their bytes."""

from __future__ import annotations

from enum import StrEnum

MAX_PREVIEW_BYTES = 15 * 1024 * 1024  # larger files are only downloaded


class PreviewKind(StrEnum):
    """How an attachment is shown on its ticket."""

    IMAGE = "image"
    PDF = "pdf"


# leading bytes of each format a browser shows safely, and the type it is served as; never the
# type the sender declared (SVG and HTML can carry script, so they are never previewed)
_SIGNATURES: tuple[tuple[bytes, str, PreviewKind], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", PreviewKind.IMAGE),
    (b"\xff\xd8\xff", "image/jpeg", PreviewKind.IMAGE),
    (b"GIF87a", "image/gif", PreviewKind.IMAGE),
    (b"GIF89a", "image/gif", PreviewKind.IMAGE),
    (b"%PDF-", "application/pdf", PreviewKind.PDF),
)


def preview_type(data: bytes | None) -> tuple[str, PreviewKind] | None:
    """The media type and kind to show an attachment's bytes as, or None when it is only
    downloaded."""
    if not data or len(data) > MAX_PREVIEW_BYTES:
        return None
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", PreviewKind.IMAGE
    for signature, media_type, kind in _SIGNATURES:
        if data.startswith(signature):
            return media_type, kind
    return None
