"""Whether an inbound email may be answered automatically (RFC 3834 and common helpdesk practice)."""

from __future__ import annotations

from collections.abc import Collection

from triage.mail.parse import ParsedEmail

_NO_REPLY_LOCALPARTS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "no_reply", "donotreply",
                        "do-not-reply", "do_not_reply", "bounce", "bounces")  # fmt: skip
_SUPPRESS_VALUES = {"all", "oof", "autoreply"}
_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}


def no_reply_reason(email: ParsedEmail, own_addresses: Collection[str], own_domain: str) -> str | None:
    """Why this email must not get an automatic answer, or None when answering is safe."""
    auto_submitted = email.header("auto-submitted").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    if email.header("precedence").strip().lower() in _BULK_PRECEDENCE:
        return f"Precedence: {email.header('precedence').strip().lower()}"
    list_headers = sorted(name for name in email.headers if name.startswith("list-"))
    if list_headers:
        return f"mailing list ({list_headers[0]})"
    suppress = {v.strip().lower() for v in email.header("x-auto-response-suppress").split(",")}
    if suppress & _SUPPRESS_VALUES:
        return "X-Auto-Response-Suppress: " + email.header("x-auto-response-suppress")
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder"):
        if name in email.headers:
            return f"{name} header"
    if "return-path" in email.headers and email.header("return-path").strip() in {"<>", ""}:
        return "empty Return-Path (a bounce or notification)"
    if email.is_delivery_report:
        return "delivery status report (bounce)"
    own = {a.lower() for a in own_addresses}
    for role, address in (("sender", email.from_address), ("Reply-To", email.reply_to_address)):
        if not address:
            continue
        local = address.partition("@")[0]
        if any(local == p or local.startswith(p + "+") or local.startswith(p + "-") for p in _NO_REPLY_LOCALPARTS):
            return f"{role} {address} does not take replies"
        if address in own:
            return "sent from one of our own addresses" if role == "sender" else "Reply-To is one of our own addresses"
    if own_domain and email.message_id.lower().endswith("@" + own_domain.lower() + ">"):
        return "Message-ID from our own domain (our own mail came back)"
    return None
