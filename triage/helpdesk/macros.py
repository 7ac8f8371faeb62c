"""Macros: saved answers staff start a reply from, one or more per category, edited by admins.

Each category's first macro is seeded from the catalogue: its FAQ answer (the answer template) for
a self-serve category, its staff draft otherwise. Migration 0009 made the table with frozen first
drafts, kept as history; when a migrate run creates the table, `seed_from_catalogue` gives those
untouched drafts the catalogue's seeds, so a fresh install starts from what the catalogue says.
Existing databases keep their macros: they belong to the admins.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from triage import catalogue
from triage.catalogue import Category
from triage.mail import compose
from triage.orm import AuditEvent, Macro, Ticket, User
from triage.states import AuditAction

MAX_TITLE = 200
MAX_BODY = 20_000


class MacroError(ValueError):
    """A macro that cannot be saved, with a message saying why."""


class MacroSeed(NamedTuple):
    """The title and text a category's first macro starts with."""

    title: str
    body: str


def seed(category: Category) -> MacroSeed:
    """The catalogue's macro seed for a category: its FAQ answer, or its staff draft."""
    body = compose.answer_text(category) if category.self_serve else category.staff_draft
    return MacroSeed(category.macro_title, body)


def seed_from_catalogue(session: Session) -> None:
    """Give each category's macros the catalogue's seed, adding missing ones (for a new table)."""
    seeded = session.scalars(select(Macro).where(Macro.category.in_(catalogue.SLUGS))).all()
    for macro in seeded:
        macro.title, macro.body = seed(catalogue.get(str(macro.category)))
    have = {macro.category for macro in seeded}
    for category in catalogue.CATEGORIES:
        if category.slug not in have:
            title, body = seed(category)
            session.add(Macro(category=category.slug, title=title, body=body))


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


def confirms_category(session: Session, macro_id: int | None, ticket: Ticket) -> str | None:
    """The model's category, when the ticket has no confirmed one and the macro the reply started
    from is of that category (the agent's choice of macro confirms it); else None."""
    if macro_id is None or ticket.confirmed_category is not None:
        return None
    macro = session.get(Macro, macro_id)
    if macro is None or not macro.category or macro.category != ticket.predicted_category:
        return None
    return macro.category


def save(
    session: Session, user: User, macro_id: int | None, title: str, body: str, category: str | None
) -> Macro:
    """Create (no id) or update a macro, checked, with an audit event."""
    title, body, category = _checked(title, body, category)
    if macro_id is None:
        macro = Macro(title=title, body=body, category=category, updated_by_id=user.id)
        session.add(macro)
        action = AuditAction.MACRO_CREATED
    else:
        found = session.get(Macro, macro_id)
        if found is None:
            raise MacroError("no such macro")
        macro = found
        macro.title, macro.body, macro.category = title, body, category
        macro.updated_by_id = user.id
        action = AuditAction.MACRO_CHANGED
    session.flush()
    _audit(session, user, action, macro)
    return macro


def _checked(title: str, body: str, category: str | None) -> tuple[str, str, str | None]:
    """A macro's title, text and category, tidied, or MacroError saying what is wrong."""
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
    return title, body, category


def delete(session: Session, user: User, macro_id: int) -> None:
    """Delete a macro, with an audit event."""
    macro = session.get(Macro, macro_id)
    if macro is None:
        raise MacroError("no such macro")
    _audit(session, user, AuditAction.MACRO_DELETED, macro)
    session.delete(macro)


def _audit(session: Session, user: User, action: str, macro: Macro) -> None:
    session.add(
        AuditEvent(
            actor=f"user:{user.email}",
            user_id=user.id,
            action=action,
            details={"macro": macro.id, "title": macro.title, "category": macro.category},
        )
    )
