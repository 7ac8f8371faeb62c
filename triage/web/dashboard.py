"""The dashboard page: volumes, automation, corrections, first-reply time, backlog."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_login import login_required
from markupsafe import Markup

from triage.helpdesk import stats
from triage.web import charts, db

bp = Blueprint("dashboard", __name__)


@bp.before_request
@login_required
def _require_login() -> None:
    """Staff only."""


@bp.get("/dashboard")
def dashboard() -> ResponseReturnValue:
    """Charts rendered server-side as SVG (every label is escaped by the chart code)."""
    figures = stats.dashboard(db())
    svg = {
        "per_day": Markup(charts.stacked_days(figures["days"], figures["per_day"])),  # noqa: S704 (escaped in charts)
        "corrected": Markup(charts.bars(figures["corrected_share"], "share corrected by staff", percent=True)),  # noqa: S704
        "auto": Markup(charts.bars(figures["auto_reply_share_by_day"], "share answered automatically", percent=True)),  # noqa: S704
        "backlog": Markup(charts.bars(figures["backlog"], "open tickets per queue")),  # noqa: S704
    }
    return render_template("dashboard.html", figures=figures, svg=svg, drift=stats.drift(db()))
