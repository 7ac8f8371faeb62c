"""Template filters for how staff pages show times, people and counts."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from triage import catalogue
from triage.helpdesk.due import UK
from triage.helpdesk.previews import preview_type
from triage.orm import User, format_reference, utcnow

DATE_TIME = "%d %b %Y %H:%M"


def uk_time(when: datetime | None, fmt: str = DATE_TIME, zone: bool = True) -> str:
    """A stored UTC time as UK clock time (GMT or BST), with the zone's name unless asked not to."""
    if when is None:
        return "—"
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    local = aware.astimezone(UK)
    text = local.strftime(fmt)
    return f"{text} {local.tzname()}" if zone else text


def age(when: datetime) -> str:
    """How long ago `when` was, in its largest whole unit (3d, 5h, 12m, 40s)."""
    seconds = max(0, int((utcnow() - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def staff_name(user: User | None, nobody: str = "nobody") -> str:
    """A member of staff as colleagues know them: their name, else their email address."""
    if user is None:
        return nobody
    return user.name.strip() or user.email


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`count` with the noun in the right number: "1 ticket", "3 tickets", "2 replies"."""
    noun = singular if count == 1 else (plural_form or singular + "s")
    return f"{count} {noun}"


def filesize(size: int) -> str:
    """A size in bytes as people read it: "812 bytes", "14 KB", "2.3 MB"."""
    if size < 1024:
        return plural(size, "byte")
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def category_title(slug: str) -> str:
    """A category's title for people, or the slug itself when it names no category."""
    return catalogue.BY_SLUG[slug].title if slug in catalogue.BY_SLUG else slug


def init_app(app: Flask) -> None:
    """Register the filters."""
    app.add_template_filter(age, "age")
    app.add_template_filter(category_title, "category_title")
    app.add_template_filter(uk_time, "uk")
    app.add_template_filter(staff_name, "staff_name")
    app.add_template_filter(plural, "plural")
    app.add_template_filter(filesize, "filesize")
    app.add_template_filter(format_reference, "reference")
    app.jinja_env.globals["preview_type"] = preview_type
