"""Macros: saved answers staff start a reply from, one or more per category, edited by admins."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage import catalogue
from triage.orm import AuditEvent, Macro, User
from triage.states import AuditAction

MAX_TITLE = 200
MAX_BODY = 20_000


class MacroError(ValueError):
    """A macro that cannot be saved, with a message saying why."""


def list_macros(session: Session) -> list[Macro]:
    """Every macro, in catalogue order (FAQ number), then the ones without a category, by title."""
    order = {slug: i for i, slug in enumerate(catalogue.SLUGS)}
    rows = session.scalars(select(Macro)).all()
    return sorted(
        rows, key=lambda m: (order.get(m.category or "", len(order)), m.title.lower(), m.id)
    )


def for_category(session: Session, category: str | None) -> list[Macro]:
    """Every macro, those for `category` first: what the reply box on a ticket offers."""
    macros = list_macros(session)
    return sorted(macros, key=lambda m: m.category != category) if category else macros


def save(
    session: Session, user: User, macro_id: int | None, title: str, body: str, category: str | None
) -> Macro:
    """Create (no id) or update a macro, checked, with an audit event."""
    title, body = " ".join((title or "").split()), (body or "").replace("\r\n", "\n").strip()
    category = category or None
    if not title:
        raise MacroError("a macro needs a title")
    if len(title) > MAX_TITLE:
        raise MacroError(f"the title is longer than {MAX_TITLE} characters")
    if not body:
        raise MacroError("a macro needs some text")
    if len(body) > MAX_BODY:
        raise MacroError(f"the text is longer than {MAX_BODY} characters")
    if category is not None and category not in catalogue.BY_SLUG:
        raise MacroError(f"unknown category {category!r}")
    if macro_id is None:
        macro = Macro(title=title, body=body, category=category, updated_by_id=user.id)
        session.add(macro)
        action = AuditAction.MACRO_CREATED
    else:
        found = session.get(Macro, macro_id)
        if found is None:
            raise MacroError("no such macro")
        macro = found
        macro.title, macro.body, macro.category, macro.updated_by_id = (
            title,
            body,
            category,
            user.id,
        )
        action = AuditAction.MACRO_CHANGED
    session.flush()
    session.add(
        AuditEvent(
            actor=f"user:{user.email}",
            user_id=user.id,
            action=action,
            details={"macro": macro.id, "title": title, "category": category},
        )
    )
    return macro


def delete(session: Session, user: User, macro_id: int) -> None:
    """Delete a macro, with an audit event."""
    macro = session.get(Macro, macro_id)
    if macro is None:
        raise MacroError("no such macro")
    session.add(
        AuditEvent(
            actor=f"user:{user.email}",
            user_id=user.id,
            action=AuditAction.MACRO_DELETED,
            details={"macro": macro.id, "title": macro.title, "category": macro.category},
        )
    )
    session.delete(macro)
