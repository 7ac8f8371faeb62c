"""gunicorn settings for production: `gunicorn -c python:triage.web.gunicorn_conf app:app`.

Besides defaults taken from the environment (BIND, WEB_CONCURRENCY), it gives the workers one shared
Prometheus directory so that `/metrics` reports the request-latency histogram of every worker,
whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
timeout = 60
graceful_timeout = 30


def on_starting(server: Any) -> None:
    """Before any worker starts: an empty multi-process metrics directory (made if not
    configured)."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):  # figures of a previous server's workers
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="triage-metrics-")


def child_exit(server: Any, worker: Any) -> None:
    """A worker has gone: tell prometheus_client, so its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker: Any) -> None:
    """Load the active model as each worker starts (the first centre's email does not wait for it),
    then freeze what is loaded out of the garbage collector's scans."""
    extensions = getattr(worker.wsgi, "extensions", {})
    models = extensions.get("triage.model_provider")
    if models is not None:
        try:
            models.current()
        except Exception as exc:  # no model yet: mail goes to triage until one is activated
            worker.log.warning("no model loaded at start: %s", exc)
    from triage.worker.loop import tune_garbage_collector

    # the app and model stay out of the collector's scans: no long pause mid-request
    tune_garbage_collector()
