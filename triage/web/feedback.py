"""The public "Did this answer your question?" page: no login; the signed link is the proof.

Link scanners (Safe Links, Mimecast) open every link in an email, so GET only shows the question
with a button and changes nothing; the button's POST records the answer. The form needs no CSRF
token: it acts only on the answer its own signed link names, which a forged request cannot know.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request
from flask.typing import ResponseReturnValue

from triage.helpdesk import feedback
from triage.mail.feedback_links import NO, YES
from triage.web import db, settings

bp = Blueprint("feedback", __name__)
_PAGE = "feedback.html"


@bp.before_request
def _rate_limit() -> ResponseReturnValue | None:
    """Too many requests from one address in a minute: 429 with Retry-After."""
    wait = feedback.rate_limited(
        db(), request.remote_addr or "unknown", settings().feedback_rate_per_minute
    )
    if wait is None:
        return None
    page = render_template(
        _PAGE,
        title="Too many requests",
        message="Please wait a minute and try the link again.",
    )
    return page, 429, {"Retry-After": str(wait)}


def _choice(answer: str) -> bool:
    if answer not in (YES, NO):
        raise feedback.bad_link()
    return answer == YES


def _refused(exc: feedback.FeedbackRefused) -> ResponseReturnValue:
    return render_template(_PAGE, title=exc.title, message=exc.message), exc.status


@bp.get("/answer/<token>/<answer>")
def ask(token: str, answer: str) -> ResponseReturnValue:
    """Show the question with one button; nothing is recorded (scanners fetch this)."""
    try:
        solved = _choice(answer)
        asked = feedback.find_answer(db(), settings(), token)
        feedback.check_open(asked)
    except feedback.FeedbackRefused as exc:
        return _refused(exc)
    return render_template(_PAGE, ask=True, solved=solved, ticket=asked.ticket)


@bp.post("/answer/<token>/<answer>")
def answer(token: str, answer: str) -> ResponseReturnValue:
    """Record the centre's answer once; a second answer, or a bad link, is refused."""
    comment = request.form.get("comment", "")
    try:
        recorded = feedback.record(db(), settings(), token, _choice(answer), comment)
        db().commit()
    except feedback.FeedbackRefused as exc:
        db().rollback()
        return _refused(exc)
    return render_template(_PAGE, done=True, solved=recorded.solved, ticket=recorded.ticket_id)


@bp.route("/answer/", defaults={"rest": ""}, methods=["GET", "POST"])
@bp.route("/answer/<path:rest>", methods=["GET", "POST"])
def broken(rest: str) -> ResponseReturnValue:
    """A feedback address cut short or mangled on its way (by a mail client, say): the clear page."""
    return _refused(feedback.bad_link())
