"""The load benchmark's floor: a Flask endpoint that only reads the body and answers 202."""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/inbound")
def inbound() -> tuple[dict[str, str], int]:
    """Read the body, answer 202."""
    request.get_data()
    return {"status": "accepted"}, 202
