"""Spotting mail whose body only thanks, confirms or says it worked: never answered
automatically."""

from __future__ import annotations

import re

# A thank-you is short; anything longer carries information a person should read. Only this many
# characters are looked at, and each is read once (one regex pass, set look-ups): linear time.
MAX_CHARS = 700
MAX_WORDS = 80
ACKNOWLEDGEMENT_REASON = "the body only thanks, confirms or says it worked: a person reads it"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_GREETING = re.compile(r"\bgood (?:morning|afternoon|evening|day)\b")
# "no need to reply", "no more questions": closing phrases whose words would otherwise read as
# asking.
_CLOSING = re.compile(r"\bno (?:need|more|further|worries|problems?)\b|\bnot needed\b")

THANKS = _words(
    "thanks thank thankyou thanx thx ty ta cheers appreciated appreciate grateful gracias "
    "obrigada obrigado merci danke multumesc dziekuje dzięki grazie"
)
# Words that say the matter is closed, received or agreed: enough on their own ...
SETTLED = _words("worked sorted fixed resolved solved noted")
_SETTLED_PHRASES = ("will do", "got it", "all set", "all good", "all ok")
# ... and words that say so only next to a thank-you ("ok thanks", "great, cheers").
AGREED = _words(
    "ok okay working works done received understood perfect great brilliant lovely fab fantastic "
    "excellent clear fine confirm confirmed confirming managed success successfully passed "
    "finished completed complete unlocked helpful useful closing appeared booked arrived "
    "installed"
)
# Words that ask for something, or report something wrong: then a person must read it.
ASKING = _words(
    "how what where why which who whom can could would please pls plz need needs needed still "
    "not but however although though again also another urgent urgently asap advise wondering "
    "wonder cannot cant can't won't wont doesn't didn't isn't aren't wasn't couldn't don't dont "
    "didnt doesnt isnt unable frozen froze freeze freezing stuck crash crashed crashing locked "
    "greyed absent sick ill missing wrong error errors broken fail failed failing keeps nothing "
    "yet waiting says saying shows message"
)
# Words a bare thank-you may be made of besides the thanks themselves (greetings, names are not
# listed: a body of thanks plus only these words is a thank-you even without a "done" word).
FILLER = _words(
    "hi hello hey dear all team folks guys you your for the a so very much many again lots loads "
    "mate kind regards best wishes warm thanking in advance and really just to say let know we i "
    "it it's that that's is are was all have has got been now there here on of with this everyone"
)


def is_acknowledgement(body: str) -> bool:
    """True when a (cleaned) body only thanks, confirms or reports success, with nothing asked or
    wrong."""
    text = (body or "")[: MAX_CHARS + 1].lower()
    if len(text) > MAX_CHARS or "?" in text:
        return False
    text = _CLOSING.sub(" closing ", _GREETING.sub(" ", text.replace("\u2019", "'")))
    words = _WORD.findall(text)
    if not words or len(words) > MAX_WORDS or any(w in ASKING for w in words):
        return False
    if any(w in SETTLED for w in words) or any(p in text for p in _SETTLED_PHRASES):
        return True
    if not any(w in THANKS for w in words):
        return False
    return any(w in AGREED for w in words) or all(w in THANKS or w in FILLER for w in words)


def acknowledgement_only(clean: str, raw: str) -> bool:
    """is_acknowledgement on the cleaned body; when cleaning left only a greeting (a reply parser
    can take "Thanks, ..." for a signature), on the raw body without quoted lines instead."""
    if is_acknowledgement(clean):
        return True
    if len(_WORD.findall(clean[:200].lower())) > 3:
        return False
    unquoted = "\n".join(
        line
        for line in (raw or "")[: MAX_CHARS * 2].splitlines()
        if not line.lstrip().startswith(">")
    )
    return is_acknowledgement(unquoted.strip())
