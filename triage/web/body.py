"""Request bodies read within a byte limit, counted while reading (chunked and length-less bodies
too)."""

from __future__ import annotations

import json

from flask import current_app, request

from triage.web.errors import ApiError

_CHUNK = 64 * 1024


def read_body(limit: int) -> bytes:
    """The whole request body; 413 JSON when it is longer than `limit` bytes, however it is sent.

    With Content-Length, Werkzeug refuses an over-long body before reading. Without it (chunked
    transfer encoding, or a body ended by closing the connection) Werkzeug would stop at the limit
    and hand back the first `limit` bytes as if they were all; here the bytes are counted as they
    arrive instead.
    """
    too_large = ApiError(413, f"the body is larger than {limit} bytes (INBOUND_MAX_BYTES)")
    length = request.content_length
    if length is not None:
        if length > limit:
            raise too_large
        return request.get_data(cache=False)
    # the server does not end the stream: nothing safe to read
    if "wsgi.input_terminated" not in request.environ:
        return b""
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)


def json_body() -> object:
    """The request's JSON body (None when it is not JSON); 413 when it is over the size cap,
    however it is sent (chunked too); 400 if any text in it is not valid Unicode.

    JSON may escape lone surrogates ("\\ud800"), which Python accepts but no database can store.
    """
    if not request.is_json:
        return None
    try:
        data = json.loads(read_body(current_app.config["MAX_CONTENT_LENGTH"]))
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError)
        return None
    if _unstorable(data):
        raise ApiError(
            400,
            "the JSON body holds text that cannot be stored (a NUL character or a lone surrogate)",
        )
    return data


def _unstorable(value: object) -> bool:
    """True if any text in a decoded JSON value holds NUL or a lone surrogate (no database stores
    either)."""
    if isinstance(value, str):
        if "\x00" in value:
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_unstorable(k) or _unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_unstorable(v) for v in value)
    return False
