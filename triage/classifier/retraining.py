"""Retraining from resolved tickets: data set, frozen evaluation, champion/challenger gate,
promotion."""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from triage.classifier import registry
from triage.classifier.dataset import TEST_FILE, TRAIN_FILE, Example, load_jsonl, sha256_of
from triage.classifier.evaluation import QualityTargets, evaluate
from triage.classifier.model import TrainedModel
from triage.classifier.training import train
from triage.config import Settings
from triage.orm import AnswerFeedback, AuditEvent, Message, Ticket
from triage.states import AuditAction, MessageDirection, TicketStatus

log = logging.getLogger(__name__)

RECENT_SHARE = (
    0.2  # the newest fifth of confirmed tickets is held out for evaluation, never trained on
)
RECENT_MAX = 2000
COVERAGE_TOLERANCE = 0.005  # coverage closer than this to the champion's is a tie: macro-F1 decides
MACRO_F1_TOLERANCE = 0.01


@dataclass(frozen=True)
class GateVerdict:
    """Whether the challenger replaces the champion, which rule decided, and why."""

    promoted: bool
    decided_by: str  # "precision", "coverage", "macro-F1", or "no champion"
    reasons: list[str]  # why the challenger was refused (empty when promoted)
    explanation: str  # one sentence for the retrain report

    def report(self) -> str:
        """Which rule decided and why, as the registry and the Models page show it."""
        return f"decided by {self.decided_by}: {self.explanation}"


def _figures(report: dict[str, Any]) -> tuple[float, float, float]:
    auto = report["auto_reply"]
    return auto["precision"], auto["coverage"], report["macro_f1"]


def _unsafe(report: dict[str, Any], targets: QualityTargets) -> str | None:
    """Why a model's automatic answers on the frozen set are below the floor, or None."""
    auto = report["auto_reply"]
    if auto["precision"] < targets.auto_reply_precision:
        return (
            f"auto-reply precision {auto['precision']:.3f} is below the floor "
            f"{targets.auto_reply_precision}"
        )
    if auto["other_auto_replied"] > targets.other_auto_replied:
        return f"{auto['other_auto_replied']:.3f} of 'other' emails auto-replied"
    if auto["staff_only_auto_replied"] > targets.staff_only_auto_replied:
        return f"{auto['staff_only_auto_replied']:.3f} of staff-only emails auto-replied"
    return None


def judge(
    challenger: dict[str, Any], champion: dict[str, Any] | None, targets: QualityTargets
) -> GateVerdict:
    """Compare two reports on the same frozen evaluation set: auto-reply precision first (never
    below the target, nor the caps on `other` and staff-only answers), then coverage (never more
    than half a point lower), then macro-F1 (never more than 0.01 lower); the first rule that
    refuses, or else the one that shows the gain, decides."""
    unsafe = _unsafe(challenger, targets)
    if unsafe:
        return GateVerdict(False, "precision", [unsafe], f"refused: {unsafe}")
    if champion is None:
        return GateVerdict(True, "no champion", [], "no champion to compare with; above the floor")
    _precision, coverage, macro_f1 = _figures(challenger)
    _old_precision, old_coverage, old_macro_f1 = _figures(champion)
    gain = coverage - old_coverage
    covered = f"coverage {coverage:.3f} against the champion's {old_coverage:.3f}"
    if gain < -COVERAGE_TOLERANCE:
        return GateVerdict(False, "coverage", [f"{covered} (lower)"], f"refused: {covered}")
    drop = old_macro_f1 - macro_f1
    scored = f"macro-F1 {macro_f1:.3f} against the champion's {old_macro_f1:.3f}"
    if drop > MACRO_F1_TOLERANCE:
        # more answers never excuse worse categories (poisoned labels can buy coverage)
        reason = f"{scored}: more than {MACRO_F1_TOLERANCE} lower"
        return GateVerdict(False, "macro-F1", [reason], f"refused: {covered}; {reason}")
    if gain > COVERAGE_TOLERANCE:
        return GateVerdict(
            True, "coverage", [], f"promoted: {covered}, precision on target, {scored}"
        )
    return GateVerdict(
        True,
        "macro-F1",
        [],
        f"promoted: coverage level ({covered}); {scored} (allowed: {MACRO_F1_TOLERANCE})",
    )


@dataclass
class RetrainResult:
    """What a retrain did and why."""

    version: str
    promoted: bool
    reasons: list[str]
    challenger: dict[str, Any]
    champion: dict[str, Any] | None
    champion_version: str | None
    n_train: int
    n_tickets_train: int
    n_eval: int
    data_sha256: str
    details: dict[str, Any] = field(default_factory=dict)
    decided_by: str = ""  # the gate's rule that decided (see judge)
    explanation: str = ""


def _normalise(text: str) -> str:
    return " ".join(text.lower().split())


CENTRE_CONFIRMATION_WEIGHT = 0.5  # a centre's "Yes, that solved it", against 1 for staff


def confirmed_examples(session: Session) -> list[tuple[Any, Example]]:
    """(resolved_at, example) for resolved tickets whose category is confirmed, oldest first.

    Staff confirmed the category (weight 1); or the centre said the automatic answer solved it and
    staff never set a category (the answered category, CENTRE_CONFIRMATION_WEIGHT). A ticket the
    centre said "No" on counts only once staff set its category after that answer. The text is the
    centre's own first inbound message (subject and cleaned body).
    """
    said_yes = select(AnswerFeedback.ticket_id).where(AnswerFeedback.solved.is_(True))
    rows = session.scalars(
        select(Ticket)
        .where(
            Ticket.status == TicketStatus.RESOLVED,
            or_(Ticket.confirmed_category.is_not(None), Ticket.id.in_(said_yes)),
        )
        .options(selectinload(Ticket.messages))
        .order_by(Ticket.resolved_at, Ticket.id)
    ).all()
    answers = _centre_answers(session, [t.id for t in rows])
    confirmed_at = _staff_confirmation_times(
        session, [t.id for t in rows if any(not a.solved for a in answers.get(t.id, []))]
    )
    out = []
    for t in rows:
        label = _label(t, answers.get(t.id, []), confirmed_at.get(t.id))
        first: Message | None = next(
            (m for m in t.messages if m.direction == MessageDirection.INBOUND), None
        )
        if label is None or first is None or not (first.clean_text or first.subject).strip():
            continue
        domain = t.centre_email.rpartition("@")[2] or "unknown"
        example = Example(
            first.subject,
            first.clean_text,
            label[0],
            f"centre:{domain}",
            f"ticket:{t.id}",
            label[1],
        )
        out.append((t.resolved_at, example))
    return out


def _label(
    ticket: Ticket, answers: list[AnswerFeedback], staff_confirmed_at: datetime | None
) -> tuple[str, float] | None:
    """A ticket's (category, weight) for training, or None when nobody confirmed it (see above)."""
    rejected = [a.created_at for a in answers if not a.solved]
    if ticket.confirmed_category is not None:
        if rejected and (staff_confirmed_at is None or staff_confirmed_at < max(rejected)):
            return None  # staff's category predates the centre's "No": not confirmed since
        return ticket.confirmed_category, 1.0
    said_yes = [a for a in answers if a.solved and a.category]
    if said_yes and not rejected:
        return said_yes[-1].category or "", CENTRE_CONFIRMATION_WEIGHT
    return None


def _centre_answers(session: Session, ticket_ids: list[int]) -> dict[int, list[AnswerFeedback]]:
    """The centres' answers on these tickets, oldest first, by ticket."""
    found: dict[int, list[AnswerFeedback]] = defaultdict(list)
    for chunk in _chunks(ticket_ids):
        for answer in session.scalars(
            select(AnswerFeedback)
            .where(AnswerFeedback.ticket_id.in_(chunk))
            .order_by(AnswerFeedback.id)
        ):
            found[answer.ticket_id].append(answer)
    return found


def _staff_confirmation_times(session: Session, ticket_ids: list[int]) -> dict[int, datetime]:
    """When staff last set the category of each of these tickets."""
    times: dict[int, datetime] = {}
    for chunk in _chunks(ticket_ids):
        for ticket_id, when in session.execute(
            select(AuditEvent.ticket_id, func.max(AuditEvent.created_at))
            .where(
                AuditEvent.ticket_id.in_(chunk),
                AuditEvent.action == AuditAction.TICKET_CATEGORY_CONFIRMED,
            )
            .group_by(AuditEvent.ticket_id)
        ):
            if ticket_id is not None and when is not None:
                times[ticket_id] = when
    return times


def _chunks(ids: list[int], size: int = 1000) -> list[list[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _dedupe(examples: list[Example], exclude: set[str]) -> list[Example]:
    seen = set(exclude)
    out = []
    for ex in examples:
        key = hashlib.sha256(_normalise(f"{ex.subject}\n{ex.body}").encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def _keys(examples: list[Example]) -> set[str]:
    return {
        hashlib.sha256(_normalise(f"{e.subject}\n{e.body}").encode()).hexdigest() for e in examples
    }


def build_datasets(
    session: Session, settings: Settings
) -> tuple[list[Example], list[Example], int]:
    """(training set, frozen evaluation set, tickets used for training).

    Evaluation: the held-out test file plus the newest staff-confirmed tickets (time-based slice).
    Training: training_data/train.jsonl plus the older confirmed tickets, de-duplicated against
    both.
    """
    examples = [ex for _when, ex in confirmed_examples(session)]
    # only staff confirmations are scored: a centre's "Yes" agrees with the model by construction
    confirmed = [ex for ex in examples if ex.weight == 1.0]
    n_recent = min(RECENT_MAX, int(len(confirmed) * RECENT_SHARE))
    older, recent = confirmed[: len(confirmed) - n_recent], confirmed[len(confirmed) - n_recent :]
    older += [ex for ex in examples if ex.weight != 1.0]
    test_file = load_jsonl(settings.training_data_dir / TEST_FILE)
    evaluation = _dedupe(test_file + recent, set())
    base = load_jsonl(settings.training_data_dir / TRAIN_FILE)
    training = _dedupe(base + older, _keys(evaluation))
    return training, evaluation, len(training) - len(_dedupe(base, _keys(evaluation)))


def _score(model: TrainedModel, evaluation: list[Example]) -> dict[str, Any]:
    return evaluate([e.label for e in evaluation], model.decide([e.pair for e in evaluation]))


def retrain(
    sessions: sessionmaker[Session],
    settings: Settings,
    by: str,
    targets: QualityTargets | None = None,
    n_jobs: int = 2,
    progress: Callable[[str], None] = lambda _msg: None,
) -> RetrainResult:
    """Train a challenger on confirmed tickets plus the hand-written data; promote it only if it is
    no worse.

    Reads and writes happen in short transactions; training runs outside any, so the service keeps
    working.
    """
    targets = targets or QualityTargets()
    progress("building the data set")
    with sessions() as session:
        training, evaluation, n_tickets = build_datasets(session, settings)
        champion_version = registry.active_version(session)
    data_hash = sha256_of(training)
    version = registry.new_version_name()
    progress(f"training {version} on {len(training)} emails ({n_tickets} from tickets)")
    result = train(training, None, version, targets, n_jobs=n_jobs)
    challenger = result.model
    progress(f"evaluating on the frozen set of {len(evaluation)} emails")
    challenger_report = _score(challenger, evaluation)
    champion_report = None
    if champion_version is not None:
        try:
            champion_report = _score(
                registry.load(settings.models_dir, champion_version), evaluation
            )
        except registry.ModelLoadError as exc:
            log.warning(
                "champion %s cannot be loaded (%s); judging the challenger on the floor alone",
                champion_version,
                exc,
            )
    verdict = judge(challenger_report, champion_report, targets)
    promoted, reasons = verdict.promoted, verdict.reasons
    challenger.metadata["metrics"]["test"] = challenger_report
    challenger.metadata.update(
        {
            "training_data_sha256": data_hash,
            "n_tickets": n_tickets,
            "evaluation": {
                "n": len(evaluation),
                "champion": champion_version,
                "champion_report": champion_report,
            },
        }
    )
    challenger.metadata["gate"] = {
        "passed": promoted,
        "reasons": reasons,
        "decided_by": verdict.decided_by,
        "explanation": verdict.explanation,
    }
    registry.save(challenger, settings.models_dir)
    with sessions() as session, session.begin():
        registry.register(session, challenger, by, promoted, verdict.report())
        if promoted:
            registry.activate(session, version, by)
        details = {
            "version": version,
            "promoted": promoted,
            "reasons": reasons,
            "decided_by": verdict.decided_by,
            "explanation": verdict.explanation,
            "champion": champion_version,
            "n_train": len(training),
            "n_tickets": n_tickets,
            "n_eval": len(evaluation),
        }
        session.add(AuditEvent(actor=by, action=AuditAction.MODEL_RETRAINED, details=details))
    progress(f"gate {verdict.report()}")
    return RetrainResult(
        version,
        promoted,
        reasons,
        challenger_report,
        champion_report,
        champion_version,
        len(training),
        n_tickets,
        len(evaluation),
        data_hash,
        decided_by=verdict.decided_by,
        explanation=verdict.explanation,
    )
