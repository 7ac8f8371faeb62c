"""Urgency: does an email describe an exam going wrong right now? Rules over the cleaned text.

A ticket is urgent when the problem is a live-exam one (the classifier's category, if the catalogue
marks it `live_exam`, or the words of the email when the model chose something else) and the email
places it in the present: a candidate in the room or waiting, "now", "this morning", a time today,
"urgent". A past or future date ("yesterday", "next week") without a strong present cue keeps it
ordinary. Every pattern is a plain alternation of words (no nested repetition), so matching is
linear in the length of the text, which is capped anyway.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from triage import catalogue

MAX_CHARS = 4000  # urgency is in the first lines of an email; the rest is never scanned

_LIVE_PROBLEM = re.compile(
    r"\b(?:froze|frozen|freez(?:e|es|ing)|hung|crash(?:ed|es|ing)?|locked|lock(?:ed)? out|"
    r"(?:can ?not|can't|cannot|won't|will not|unable to) "
    r"(?:unlock|open|start|get into|access|log ?in)|"
    r"keycode|key code|not (?:showing|appearing|listed) in invigilate|"
    r"secureclient|secure client)\b",
    re.IGNORECASE,
)
# strong cues: a candidate is there, the exam is under way
_STRONG = re.compile(
    r"\b(?:right now|at the moment|currently|as we speak|in the room|in the exam room|"
    r"sat there|sitting there|sat waiting|sitting waiting|(?:is|are|been|still|currently) waiting|"
    r"waiting to (?:start|sit|begin|continue)|in progress|under way|underway|mid[- ]exam|"
    r"half ?way|part ?way|clock (?:is )?(?:still )?(?:running|ticking|going)|"
    r"exam (?:has |had |was )?(?:started|begun|began) at|"
    r"(?:started|starts|due to start) at \d{1,2}(?:[:.]\d{2})?|"
    r"candidates? (?:is|are) (?:here|sat|sitting|stuck|waiting))\b",
    re.IGNORECASE,
)
# weak cues: present or pressing, unless the email also speaks of another day
_WEAK = re.compile(
    r"\b(?:now|today|this morning|this afternoon|urgent|urgently|asap|a\.s\.a\.p|"
    r"as soon as possible|immediately|"
    r"emergency|help|\d{1,2}[:.]\d{2}(?: ?[ap]\.?m\.?)?|\d{1,2} ?[ap]\.?m\.?)\b",
    re.IGNORECASE,
)
_OTHER_DAY = re.compile(
    r"\b(?:yesterday|tomorrow|"
    r"last (?:week|month|term|year|friday|monday|tuesday|wednesday|thursday)|"
    r"next (?:week|month|term|year|monday|tuesday|wednesday|thursday|friday)|"
    r"(?:a|two|three|few|several) (?:days|weeks) ago)\b",
    re.IGNORECASE,
)


class Urgency(NamedTuple):
    """Whether a ticket is urgent, and why (shown to staff in the "Why it is here" panel)."""

    urgent: bool
    reason: str | None


def assess(category: str | None, subject: str, text: str) -> Urgency:
    """Decide whether an email describes a live exam in trouble now; returns (urgent, reason)."""
    words = f"{subject or ''}\n{(text or '')[:MAX_CHARS]}"
    known = catalogue.BY_SLUG.get(category or "")
    if known is not None and known.live_exam:
        problem = known.title
    else:
        found = _LIVE_PROBLEM.search(words)
        if found is None:
            return Urgency(False, None)
        problem = f'a live-exam problem ("{found.group(0)}")'
    strong = _STRONG.search(words)
    if strong is not None:
        return Urgency(True, _reason(problem, strong.group(0)))
    weak = _WEAK.search(words)
    if weak is not None and _OTHER_DAY.search(words) is None:
        return Urgency(True, _reason(problem, weak.group(0)))
    return Urgency(False, None)


def _reason(problem: str, cue: str) -> str:
    return f'{problem}, happening now ("{" ".join(cue.split())}")'[:300]
