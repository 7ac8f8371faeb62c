"""One address header read as a mail server reads it: the angle-addr is the address, a display
name is only a name (never a source of an address), and words are never joined into one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.headerregistry import Address

MAX_ADDRESS = 254  # characters of an address that can be answered (RFC 5321 path limit)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LINE_BREAK = re.compile("[\r\n\u2028\u2029]")
_LOOKS_LIKE_ADDRESS = re.compile(r"[^\s<>()\"',;:@]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@dataclass(frozen=True)
class Mailbox:
    """One mailbox as written: its display name and the addr-spec as it stands ('' if none)."""

    name: str  # decoded, single line
    address: str  # lower-cased, domain without a trailing dot; '' when none can be answered
    problem: str = ""  # why the mailbox is doubtful (held for a person), '' when it is not
    injected: bool = False  # a line break in its name: the header is hostile, its address unusable

    @property
    def usable(self) -> bool:
        """Whether the mailbox names an address that may be recorded as who sent the mail."""
        return bool(self.address) and not self.injected


@dataclass
class _Pieces:
    """The top-level pieces of one mailbox in a header value."""

    phrase: str = ""  # text outside angle brackets and comments (quoted strings kept as written)
    angle: str | None = None  # the first angle-addr's content
    after_angle: str = ""  # text after the angle-addr (none in a well-formed mailbox)
    comments: str = ""


def read_mailboxes(value: str, label: str) -> list[Mailbox]:
    """Each mailbox in an address header's raw value (encoded words still encoded), in order.

    Bare words with no address (an unquoted "Okafor, Chidi" split at its comma) join the name of
    the mailbox after them.
    """
    if _LINE_BREAK.search(decode_words(_unfold(value))):  # never read an injected header
        why = f"{label} header held a line break in an encoded word (a header injection)"
        return [Mailbox(_name(value), "", why, injected=True)]
    mailboxes: list[Mailbox] = []
    words: list[str] = []
    for pieces in _split(_unfold(value)):
        mailbox = _mailbox(pieces, label)
        if mailbox is None:
            continue
        if not mailbox.address and pieces.angle is None and "@" not in pieces.phrase:
            words.append(mailbox.name)
            continue
        if words:
            name = ", ".join([*words, mailbox.name]) if mailbox.name else ", ".join(words)
            mailbox, words = Mailbox(name, mailbox.address, mailbox.problem), []
        mailboxes.append(mailbox)
    if words:
        mailboxes.append(Mailbox(", ".join(words), "", f"{label} header has no address"))
    return mailboxes


def normal_address(text: str) -> str:
    """The addr-spec in `text` as stored (lower-cased, no trailing dot), or '' if it is none.

    It must be one addr-spec exactly as the header parser reads it: no spaces between words, no
    encoded words, no control characters, a local part and a domain.
    """
    spec = text.strip()
    if not spec or "=?" in spec or _CONTROL.search(spec) or _spaced(spec):
        return ""
    local, at, domain = spec.rpartition("@")
    domain = domain.rstrip(".")
    if not (local and at and domain):
        return ""
    spec = f"{local}@{domain}".lower()
    try:
        parsed = Address(addr_spec=spec).addr_spec
    except Exception:  # the header parser refuses it: no reply could carry it in To
        return ""
    return spec if parsed == spec else ""


def decode_words(value: str) -> str:
    """A header fragment with its encoded words decoded (as it came, when they do not decode)."""
    try:
        return str(make_header(decode_header(value)))
    except Exception:
        return value


def _unfold(value: str) -> str:
    """The header value on one line: folds, and line breaks with no fold after them, as spaces."""
    return re.sub(r"\r?\n[ \t]*|\r", " ", value)


def _split(value: str) -> list[_Pieces]:
    """The value split into mailboxes at top-level commas (a group's name and ';' dropped)."""
    found: list[_Pieces] = []
    current = _Pieces()
    target = "phrase"
    depth, index = 0, 0
    while index < len(value):
        char = value[index]
        if char == "\\" and index + 1 < len(value):
            _add(current, target, value[index : index + 2])
            index += 2
            continue
        if depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth:
                current.comments += char
            index += 1
            continue
        if char == '"':
            end = _quote_end(value, index)
            _add(current, target, value[index:end])
            index = end
            continue
        if char == "(":
            depth, current.comments = 1, current.comments + " "
        elif char == "<" and target != "angle" and current.angle is None:
            target, current.angle = "angle", ""
        elif char == ">" and target == "angle":
            target = "after"
        elif char in ",;" and target != "angle":
            found.append(current)
            current, target = _Pieces(), "phrase"
        elif char == ":" and target == "phrase" and not re.search("@|=\\?", current.phrase):
            current = _Pieces()  # a group's display name: its mailboxes follow
        else:
            _add(current, target, char)
        index += 1
    found.append(current)
    return found


def _quote_end(value: str, start: int) -> int:
    """The index after the quoted string starting at `start` (the end of the value if unclosed)."""
    index = start + 1
    while index < len(value):
        if value[index] == "\\":
            index += 2
            continue
        if value[index] == '"':
            return index + 1
        index += 1
    return len(value)


def _add(pieces: _Pieces, target: str, text: str) -> None:
    if target == "angle":
        pieces.angle = (pieces.angle or "") + text
    elif target == "after":
        pieces.after_angle += text
    else:
        pieces.phrase += text


def _mailbox(pieces: _Pieces, label: str) -> Mailbox | None:
    """The mailbox the pieces make, or None for an empty one (a stray comma)."""
    if pieces.angle is not None:
        route_free = pieces.angle.rpartition(":")[2]  # an obsolete source route, @a,@b:
        address = normal_address(route_free)
        name = _name(pieces.phrase or pieces.comments)
        return _checked(name, address, label, pieces.phrase + pieces.after_angle)
    if not pieces.phrase.strip() and not pieces.comments.strip():
        return None
    address = normal_address(pieces.phrase)
    if address:
        return _checked(_name(pieces.comments), address, label, "")
    return _lenient(pieces, label)


def _lenient(pieces: _Pieces, label: str) -> Mailbox:
    """A mailbox with no angle brackets that is no addr-spec: one word that is one, else none."""
    words = pieces.phrase.split()
    found = [(i, normal_address(word)) for i, word in enumerate(words[:50]) if "@" in word]
    addresses = [(i, address) for i, address in found if address]
    if len(addresses) != 1:
        why = "names several addresses" if addresses else "has no address that parses"
        return Mailbox(_name(pieces.phrase), "", f"{label} header {why} without angle brackets")
    at, address = addresses[0]
    rest = " ".join(words[:at] + words[at + 1 :])
    checked = _checked(_name(rest or pieces.comments), address, label, rest)
    problem = checked.problem or f"{label} header could only be read leniently (no angle brackets)"
    return Mailbox(checked.name, checked.address, problem)


def _checked(name: str, address: str, label: str, raw_name: str) -> Mailbox:
    """The mailbox with what makes it doubtful: an address-like or broken name, a long address."""
    decoded = decode_words(raw_name) if raw_name else name
    problem = ""
    if _CONTROL.search(decoded):
        problem = f"{label} display name held a control character"
    shown = _LOOKS_LIKE_ADDRESS.findall(decoded)
    other = next((a for a in shown if normal_address(a) != address), None)
    if not problem and other and address:
        problem = (
            f"{label} display name looks like another address ({other[:100]}), "
            f"but the mail was sent from {address}: a spoofing sign"
        )
    if len(address) > MAX_ADDRESS:
        return Mailbox(name, "", f"{label} address is longer than {MAX_ADDRESS} characters")
    return Mailbox(name, address, problem)


def _name(raw: str) -> str:
    """A display name as shown: quotes removed, encoded words decoded, one line."""
    text = raw.strip()
    text = re.sub(r'"((?:[^"\\]|\\.)*)"?', lambda m: re.sub(r"\\(.)", r"\1", m.group(1)), text)
    decoded = decode_words(text)
    return " ".join(_CONTROL.sub(" ", decoded).split())


def _spaced(spec: str) -> bool:
    """Whether an addr-spec has whitespace outside its quoted strings (then it is words)."""
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', "", spec)
    return bool(re.search(r"\s", outside))


def address_like(text: str) -> list[str]:
    """The words of a text that look like email addresses (to compare domains, never to answer)."""
    return list(_LOOKS_LIKE_ADDRESS.findall(text))
