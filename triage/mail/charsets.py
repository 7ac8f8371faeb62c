"""Decode mail text as mail clients do: charset labels read by the WHATWG Encoding rules (a label
names the superset browsers and mail clients decode with), declared charsets verified, undeclared
ones detected, and encoded words and raw 8-bit bytes in headers decoded the same way.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache

from charset_normalizer import from_bytes

# WHATWG Encoding Standard labels (https://encoding.spec.whatwg.org/#names-and-labels) whose
# decoder is a superset of the codec Python gives the label: gb2312 is read as GBK (gb18030
# decodes all of it), Shift_JIS as Windows-31J, EUC-KR as Windows-949, ISO-8859-1 and US-ASCII as
# Windows-1252, Big5 with the HKSCS extensions.
_LABELS = (
    (
        "cp1252",
        (
            "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
            "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 "
            "x-cp1252"
        ),
    ),
    (
        "cp1254",
        (
            "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
            "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254"
        ),
    ),
    ("cp874", "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874"),
    (
        "gb18030",
        (
            "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk "
            "gb18030 euc-cn x-euc-cn cp936 ms936 windows-936"
        ),
    ),
    ("big5hkscs", "big5 big5-hkscs cn-big5 csbig5 x-x-big5 x-big5 cp950"),
    (
        "cp932",
        (
            "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis cp932 "
            "x-ms-cp932 shift_jisx0213 shift_jis_2004"
        ),
    ),
    ("euc_jp", "cseucpkdfmtjapanese euc-jp x-euc-jp eucjp"),
    ("iso2022_jp", "csiso2022jp iso-2022-jp iso2022jp jis"),
    (
        "cp949",
        (
            "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 "
            "ksc5601 ksc_5601 windows-949 cp949 uhc x-windows-949"
        ),
    ),
    ("utf-8", "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8"),
    ("iso8859_8", "csiso88598i iso-8859-8-i logical"),
    ("mac_roman", "csmacintosh mac macintosh x-mac-roman"),
    ("mac_cyrillic", "x-mac-cyrillic x-mac-ukrainian"),
)
_WHATWG = {label: codec for codec, labels in _LABELS for label in labels.split()}
# when a strict decode with the label's codec fails, these (in order) are tried strictly too
_FAMILY = {
    "iso2022_jp": ("iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_3", "iso2022_jp_2004"),
    "cp932": ("shift_jis_2004", "shift_jisx0213"),
    "euc_jp": ("euc_jis_2004", "euc_jisx0213", "cp932"),
    "gb18030": (),
    "big5hkscs": ("cp950",),
    "cp949": ("johab",),
}
# encodings whose ASCII-only bytes can mean something other than ASCII (codecs.lookup names)
_NOT_ASCII_COMPATIBLE = re.compile(r"iso2022_|utf-7|hz|utf-16|utf-32")
# Python codecs that are not charsets a mail could be written in
_NOT_CHARSETS = frozenset(
    {"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined", "mbcs", "oem"}
)
# what a detector may pick for text that declares nothing (a Latin-1 guess is often a wrong code
# page, so single-byte guesses outside these scripts fall back to Windows-1252)
_DETECTED_SINGLE_BYTE = frozenset(
    {
        "cp1251",
        "koi8_r",
        "koi8_u",
        "iso8859_5",
        "mac_cyrillic",
        "cp866",
        "cp1253",
        "iso8859_7",
        "cp1255",
        "iso8859_8",
        "cp1256",
        "iso8859_6",
        "cp874",
        "tis_620",
    }
)
DETECT_BYTES = 64 * 1024  # how much of a text the detector reads
MIN_DETECTED_BYTES = 4  # 8-bit bytes a detector needs before its guess is trusted
_HIGH_BYTES = bytes(range(0x80, 0x100))
_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?]*?)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_BETWEEN_WORDS = re.compile(r"[ \t\r\n]*")


def _c1_as_latin1(error: UnicodeError) -> tuple[str, int]:
    """Windows-1252's five unassigned bytes as the C1 controls the WHATWG decoder gives them."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("latin-1"), error.end


codecs.register_error("triage-c1", _c1_as_latin1)


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The Python codec to decode a charset label with (its WHATWG superset), None if it is none."""
    name = (label or "").strip().strip("\"'").lower()
    if not name:
        return None
    if name in _WHATWG:
        return _WHATWG[name]
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    mapped = _WHATWG.get(info.name.replace("_", "-"))
    return mapped or info.name


@dataclass
class DecodeBudget:
    """How many bytes an email may still send through the slow path (retries with other codecs,
    detection): past it, text that does not decode is read leniently in one pass."""

    fallback_bytes: int = 2_000_000


def decode_text(data: bytes, label: str | None = None, budget: DecodeBudget | None = None) -> str:
    """Text as a mail client shows it: the label's superset, verified; else detected; never fails.

    A declared charset is used when the bytes decode with it (a single-byte label on bytes that
    are valid UTF-8 is read as UTF-8: the label was wrong); when they do not, UTF-8, then the
    detector's guess, then the candidate with the fewest replacement characters is used. Bytes
    with no usable label are read as UTF-8 when they are, else as the detector guesses.
    """
    codec = codec_for(label)
    stateful = bool(codec and _NOT_ASCII_COMPATIBLE.match(codecs.lookup(codec).name))
    if data.isascii() and not stateful:
        return data.decode("ascii")
    candidates = [codec, *_FAMILY.get(codec, ())] if codec else []
    if codec and not stateful and not _multibyte(codec) and _is_utf8(data):
        return data.decode("utf-8").removeprefix("\ufeff")
    for index, candidate in enumerate(candidates):
        text = _strict(data, candidate)
        if text is not None:
            return text
        if index == 0 and budget is not None:
            if budget.fallback_bytes < len(data):
                return _lenient(data, candidate)
            budget.fallback_bytes -= len(data)
    if not candidates and budget is not None:
        if budget.fallback_bytes < len(data):
            return _lenient(data, "utf-8")
        budget.fallback_bytes -= len(data)
    text = _strict(data, "utf-8")
    if text is not None:
        return text
    if codec is None:
        utf8 = _lenient(data, "utf-8")
        bad = utf8.count("\ufffd")
        good = _non_ascii(utf8) - bad
        if good and bad <= max(1, good // 20):
            return utf8  # UTF-8 with a stray byte or two, shown as a mail client shows it
    guess = detected_codec(data, declared=bool(codec))
    text = _strict(data, guess) if guess else None
    if text is not None:
        return text
    options = [codec or guess or "cp1252", *([guess] if guess and codec else [])]
    # a declared charset's few replacement characters beat another charset's mojibake
    return min((_lenient(data, option) for option in options), key=lambda t: t.count("\ufffd"))


def _non_ascii(text: str) -> int:
    return len(text) - len(text.encode("ascii", "ignore"))


def detected_codec(data: bytes, declared: bool = False) -> str | None:
    """The codec a detector finds for bytes (a Latin guess for undeclared text as Windows-1252)."""
    sample = data[:DETECT_BYTES]
    if len(sample) - len(sample.translate(None, _HIGH_BYTES)) < MIN_DETECTED_BYTES:
        return None if declared else "cp1252"  # too little to tell: a guess would be noise
    try:
        best = from_bytes(sample).best()
    except Exception:  # a detector failure leaves the fallbacks
        return None if declared else "cp1252"
    guess = codecs.lookup(best.encoding).name if best is not None else ""
    if guess and (_multibyte(guess) or guess in _DETECTED_SINGLE_BYTE):
        return guess
    return None if declared else "cp1252"


@lru_cache(maxsize=64)
def _multibyte(codec: str) -> bool:
    """True for a codec that writes some characters as more than one byte."""
    return codec not in {"ascii", "latin_1"} and len("\u00e9\u4e2d".encode(codec, "replace")) > 2


def _is_utf8(data: bytes) -> bool:
    return _strict(data, "utf-8") is not None


def _strict(data: bytes, codec: str) -> str | None:
    """data decoded with codec (Windows-1252's gaps as C1 controls), or None if it does not."""
    try:
        text = data.decode(codec, "triage-c1" if codec == "cp1252" else "strict")
    except (UnicodeDecodeError, LookupError, ValueError):
        return None
    return text.removeprefix("\ufeff")


def _lenient(data: bytes, codec: str) -> str:
    try:
        return data.decode(codec, "replace").removeprefix("\ufeff")
    except (LookupError, ValueError):
        return data.decode("utf-8", "replace")


def header_bytes(value: str) -> bytes:
    """A header value as the bytes it came as (the parser keeps 8-bit bytes as surrogates)."""
    return value.encode("utf-8", "surrogateescape")


def decode_header_text(value: str, fallback: str | None = None) -> str:
    """A raw header value as people read it: encoded words decoded with the charset superset
    (adjacent words of one charset joined before decoding, so a character split between two
    words is whole), and raw 8-bit text read as UTF-8, else as `fallback` (the body's charset),
    else as detected.
    """
    value = _FOLD.sub("", value or "")
    out: list[str] = []
    pending: list[tuple[str, bytes]] = []  # encoded words not yet decoded: (charset, bytes)
    last = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[last : match.start()]
        if not (pending and _BETWEEN_WORDS.fullmatch(between)):  # else: space between words
            out += [_decoded_words(pending), _raw_text(between, fallback)]
            pending = []
        charset = match.group(1).partition("*")[0]
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:
            out.append(_decoded_words(pending) + match.group(0))
            pending = []
        elif pending and pending[-1][0].lower() == charset.lower():
            pending[-1] = (pending[-1][0], pending[-1][1] + data)
        else:
            pending.append((charset, data))
        last = match.end()
    out.append(_decoded_words(pending))
    out.append(_raw_text(value[last:], fallback))
    return "".join(out)


def _decoded_words(words: list[tuple[str, bytes]]) -> str:
    return "".join(decode_text(data, charset) for charset, data in words)


def _word_bytes(encoding: str, text: str) -> bytes | None:
    """The bytes of an encoded word's text (B or Q), or None when they cannot be read."""
    try:
        if encoding in "bB":
            compact = re.sub(r"[^A-Za-z0-9+/]", "", text)
            return base64.b64decode(compact + "=" * (-len(compact) % 4))
        return binascii.a2b_qp(text.encode("ascii"), header=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def _raw_text(text: str, fallback: str | None) -> str:
    """Header text outside encoded words: 8-bit bytes as UTF-8, else the fallback, else detected."""
    if text.isascii():
        return text
    data = header_bytes(text)
    utf8 = _strict(data, "utf-8")
    if utf8 is not None:
        return utf8
    return decode_text(data, fallback)


_EXTENDED_PARAM = re.compile(r"([^\s=;*]+)\*(?:(\d+)\*?|)=\s*\"?([^\";]*)")
_PLAIN_PARAM = re.compile(r"([^\s=;*]+)=\s*(?:\"((?:[^\"\\\\]|\\\\.)*)\"|([^\s;]*))")


def header_parameter(value: str, names: tuple[str, ...], fallback: str | None = None) -> str:
    """A MIME parameter (the first of `names` present) of a raw header, decoded as mail clients
    do: RFC 2231 (with continuations and its charset's superset), RFC 2047 encoded words inside a
    quoted value, or raw 8-bit bytes ('' if absent)."""
    value = _FOLD.sub("", value or "")
    for wanted in names:
        pieces = [
            (int(m.group(2) or 0), m.group(3))
            for m in _EXTENDED_PARAM.finditer(value)
            if m.group(1).lower() == wanted
        ]
        if pieces:
            joined = "".join(piece for _n, piece in sorted(pieces, key=lambda p: p[0]))
            charset, _lang, encoded = (
                joined.split("'", 2) if joined.count("'") >= 2 else ("", "", joined)
            )
            data = urllib.parse.unquote_to_bytes(encoded)
            return decode_text(data, charset or fallback)
        for m in _PLAIN_PARAM.finditer(value):
            if m.group(1).lower() == wanted:
                return decode_header_text(
                    m.group(2) if m.group(2) is not None else m.group(3), fallback
                )
    return ""


def has_garbling(text: str) -> bool:
    """True when text holds replacement characters or undecoded bytes (it would read as garbage)."""
    return "\ufffd" in text or any("\udc80" <= c <= "\udcff" for c in text)
