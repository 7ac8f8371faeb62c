"""The load benchmark's accept floor: a Flask endpoint that only reads the body and answers 202."""

from __future__ import annotations

from flask import Flask, request

app = Flask(__name__)


@app.post("/api/v1/inbound")
def inbound() -> tuple[dict[str, str], int]:
    """Read the body, answer 202."""
    request.get_data()
    return {"status": "accepted"}, 202


@app.get("/healthz")
def healthz() -> tuple[dict[str, str], int]:
    """Answer once the server is up (the benchmark waits for this before firing)."""
    return {"status": "ok"}, 200
