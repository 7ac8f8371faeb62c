"""What makes two copies of an email the same email: a hash of what its author wrote.

Relays add trace headers (Received, DKIM, Authentication-Results) and may change line endings, so
the hash covers only the headers the author's mailer wrote and the body with its line endings
made uniform: the same email through the webhook and through IMAP hashes alike,
while a different email that reuses a Message-ID does not. Linear, with no regex over the body
(a 10 MB body costs milliseconds).
"""

from __future__ import annotations

import hashlib
import re

_AUTHOR_HEADERS = frozenset(
    {
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"subject",
        b"date",
        b"message-id",
        b"in-reply-to",
        b"references",
        b"mime-version",
        b"content-type",
        b"content-transfer-encoding",
    }
)
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(rb"\r?\n[ \t]+")


def content_hash(raw: bytes) -> str:
    """The SHA-256 (hex) of an email's author headers and its body, relay changes aside."""
    found = _HEAD_END.search(raw)
    head, body = (raw[: found.start()], raw[found.end() :]) if found else (raw, b"")
    digest = hashlib.sha256()
    for line in _FOLD.sub(b" ", head).split(b"\n"):
        name, colon, value = line.partition(b":")
        name = name.strip().lower()
        if colon and name in _AUTHOR_HEADERS:
            digest.update(name + b":" + b" ".join(value.split()) + b"\n")
    digest.update(b"\n")
    digest.update(body.replace(b"\r\n", b"\n").rstrip(b" \t\r\n"))
    return digest.hexdigest()
