"""Entry point: `flask --app app ...` and `gunicorn app:app` both use this module's `app`."""

import sys

from triage import create_app
from triage.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"triage: configuration error: {exc}")
