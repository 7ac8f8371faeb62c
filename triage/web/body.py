"""Request bodies read within a byte limit, counted while reading (chunked and length-less bodies
too)."""

from __future__ import annotations

from flask import request

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
