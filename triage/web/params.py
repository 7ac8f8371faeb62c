"""Numeric query and form parameters, checked: a bad one is a 400 (JSON on the API, a form error on
pages)."""

from __future__ import annotations

from triage.web import MAX_ID
from triage.web.errors import ApiError


class BadParameter(ApiError):
    """A query or form parameter that is not a whole number in its range."""

    def __init__(self, name: str, low: int, high: int) -> None:
        super().__init__(400, f"{name} must be a whole number from {low} to {high}", field=name)


def int_param(
    value: str | None, name: str, default: int | None = None, low: int = 1, high: int = MAX_ID
) -> int | None:
    """`value` as an int in [low, high]; `default` when it is missing or empty; BadParameter
    otherwise.

    Only ASCII digits count: "²" passes str.isdigit() but int() refuses it, and a number past `high`
    would overflow the database's integer types.
    """
    if value is None or value == "":
        return default
    if (
        not (value.isascii() and value.isdigit())
        or len(value) > 12
        or not low <= int(value) <= high
    ):
        raise BadParameter(name, low, high)
    return int(value)


def required_int(value: str | None, name: str, low: int = 1, high: int = MAX_ID) -> int:
    """Like int_param, but missing is an error too."""
    result = int_param(value, name, None, low, high)
    if result is None:
        raise BadParameter(name, low, high)
    return result
