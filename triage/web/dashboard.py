"""The dashboard page: volumes, automation, corrections, first-reply time, backlog."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue

from triage.helpdesk import stats
from triage.web import charts, db
from triage.web.login import login_required

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
        "per_day": charts.trusted(charts.stacked_days(figures["days"], figures["per_day"])),
        "corrected": charts.trusted(
            charts.bars(figures["corrected_share"], "share corrected by staff", percent=True)
        ),
        "auto": charts.trusted(
            charts.bars(
                figures["auto_reply_share_by_day"], "share answered automatically", percent=True
            )
        ),
        "backlog": charts.trusted(charts.bars(figures["backlog"], "open tickets per queue")),
    }
    return render_template(
        "dashboard.html",
        figures=figures,
        svg=svg,
        drift=stats.drift(db()),
        answer_feedback=stats.answer_feedback(db()),
    )
