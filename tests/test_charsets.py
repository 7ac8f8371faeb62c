"""Charset labels that name no codec: the text is still read (as UTF-8), never a rejected email."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from flask import Flask

from tests.mailutil import deliver, make_email, post_email, ticket
from triage.mail.charsets import codec_for, decode_text
from triage.mail.compose import reply_subject
from triage.mail.parse import parse


@pytest.mark.parametrize("label", ['"us-ascii\x00"', "x-no-such-charset", '"utf-8\x00junk"'])
def test_a_charset_that_names_no_codec_is_read_as_utf8(label: str) -> None:
    raw = (
        b"From: Jo <jo@college.example>\r\nSubject: exam\r\n"
        b"Content-Type: text/plain; charset=" + label.encode("latin-1") + b"\r\n\r\n"
        b"The exam is locked \xe2\x80\x93 please help\r\n"
    )
    parsed = parse(raw)  # the webhook took it (its headers are an email): the worker must too
    assert "The exam is locked \u2013 please help" in parsed.text


# --- text decoded as mail clients decode it (issue 25, item 4) -----------------------------------

JAPANESE = "試験センターからのお問い合わせです。"


def _body(label: str | None, data: bytes, subject: bytes = b"exam") -> bytes:
    charset = f"; charset={label}" if label else ""
    return (
        b"From: Jo <jo@college.example>\r\nSubject: " + subject + b"\r\n"
        b"Content-Type: text/plain" + charset.encode() + b"\r\n\r\n" + data
    )


@pytest.mark.parametrize(
    ("label", "data", "expected"),
    [
        # gb2312 is read as GBK: 镕 (in the Premier's name) and 堃 are GBK only
        ("gb2312", "朱镕基 考试中心 堃".encode("gbk"), "朱镕基 考试中心 堃"),
        ("GB_2312-80", "考试 镕".encode("gbk"), "考试 镕"),
        # ISO-2022-JP with half-width katakana (the _ext extension) and with JIS X 0212 (_2)
        ("iso-2022-jp", ("ｼｹﾝ " + JAPANESE).encode("iso2022_jp_ext"), "ｼｹﾝ " + JAPANESE),
        ("iso-2022-jp", "鄧 丂".encode("iso2022_jp_2"), "鄧 丂"),
        # Shift_JIS labelled ISO-2022-JP (a common mislabel)
        ("iso-2022-jp", JAPANESE.encode("shift_jis"), JAPANESE),
        # Shift_JIS read as Windows-31J: NEC and IBM extensions (①, ㈱, 髙)
        (
            "shift_jis",
            "① ㈱ 髙橋 ".encode("cp932") + JAPANESE.encode("cp932"),
            "① ㈱ 髙橋 " + JAPANESE,
        ),
        ("x-sjis", JAPANESE.encode("cp932"), JAPANESE),
        # EUC-KR read as Windows-949 (똠 and 햏 are UHC only)
        ("euc-kr", "시험 센터 똠 햏".encode("cp949"), "시험 센터 똠 햏"),
        ("ks_c_5601-1987", "시험 센터".encode("cp949"), "시험 센터"),
        # ISO-8859-1 and US-ASCII read as Windows-1252 (smart quotes, euro, dash)
        ("iso-8859-1", "“Exam” \u2013 €20".encode("cp1252"), "“Exam” \u2013 €20"),
        ("us-ascii", "caf\u00e9 “ok”".encode("cp1252"), "café “ok”"),
        # a Latin-1 label on UTF-8 bytes: the label was wrong
        ("iso-8859-1", "Grüße \u2013 Zoë".encode(), "Grüße \u2013 Zoë"),
        # Big5 with the HKSCS extensions
        ("big5", "考試中心 㗎".encode("big5hkscs"), "考試中心 㗎"),
        # no charset: UTF-8 when it is, else detected
        (None, "Ünïcödé \u2013 text".encode(), "Ünïcödé \u2013 text"),
        (
            None,
            "Это экзаменационный центр, помогите пожалуйста".encode("cp1251"),
            "Это экзаменационный центр, помогите пожалуйста",
        ),
        (None, (JAPANESE * 3).encode("cp932"), JAPANESE * 3),
        (
            None,
            "Le centre d'examen a un problème".encode("latin-1"),
            "Le centre d'examen a un problème",
        ),
        # UTF-8 declared, with a byte-order mark
        ("utf-8", "\ufeffhello \u2013 there".encode(), "hello \u2013 there"),
    ],
)
def test_bodies_decode_like_a_mail_client(label: str | None, data: bytes, expected: str) -> None:
    text = parse(_body(label, data)).text
    assert text == expected and "\ufffd" not in text


def _encoded_word(charset: str, data: bytes) -> bytes:
    return f"=?{charset}?B?{base64.b64encode(data).decode()}?=".encode()


@pytest.mark.parametrize(
    ("subject", "body_label", "expected"),
    [
        (_encoded_word("gb2312", "镕考试".encode("gbk")), None, "镕考试"),
        (_encoded_word("iso-2022-jp", "ｼｹﾝ試験".encode("iso2022_jp_ext")), None, "ｼｹﾝ試験"),
        (_encoded_word("shift_jis", "①試験".encode("cp932")), None, "①試験"),
        (_encoded_word("ks_c_5601-1987", "똠 시험".encode("cp949")), None, "똠 시험"),
        # a multi-byte character split between two encoded words
        (
            _encoded_word("utf-8", "試験".encode()[:4])
            + b"\r\n "
            + _encoded_word("utf-8", "試験".encode()[4:]),
            None,
            "試験",
        ),
        # raw 8-bit headers: UTF-8 first, then the body's charset
        ("Résultats \u2013 août".encode(), "iso-8859-1", "Résultats \u2013 août"),
        ("Résultats août".encode("latin-1"), "iso-8859-1", "Résultats août"),
        ("考试中心问题".encode("gbk"), "gb2312", "考试中心问题"),
        (JAPANESE.encode("cp932"), "shift_jis", JAPANESE),
    ],
)
def test_subjects_decode_like_a_mail_client(
    subject: bytes, body_label: str | None, expected: str
) -> None:
    body = "本文 café".encode(codec_for(body_label) or "utf-8", "ignore") if body_label else b"body"
    email = parse(_body(body_label, body, subject=subject))
    assert email.subject == expected


def test_a_sender_name_in_a_superset_charset_is_read() -> None:
    raw = (
        b"From: "
        + _encoded_word("gb2312", "朱镕基".encode("gbk"))
        + b" <zhu@school.example>\r\nSubject: x\r\n\r\nhi"
    )
    email = parse(raw)
    assert (email.from_name, email.from_address) == ("朱镕基", "zhu@school.example")


def test_labels_map_to_the_whatwg_superset_and_non_charsets_to_none() -> None:
    assert [
        codec_for(label) for label in ("GB2312", "Shift_JIS", "EUC-KR", "ISO-8859-1", "ASCII")
    ] == [
        "gb18030",
        "cp932",
        "cp949",
        "cp1252",
        "cp1252",
    ]
    assert codec_for("idna") is None and codec_for("base64") is None and codec_for("") is None
    assert decode_text(b"\x81\x8d", "windows-1252") == "\x81\x8d"  # no replacement characters


def test_a_garbled_subject_is_never_echoed_to_a_centre() -> None:
    assert reply_subject(7, "Exam \ufffd\ufffd booking") == "[IMI-000007] Re: Your enquiry"
    assert reply_subject(7, "Exam \udce9 booking") == "[IMI-000007] Re: Your enquiry"
    assert reply_subject(7, "Re: Exam booking") == "[IMI-000007] Re: Exam booking"


def _file(disposition: bytes) -> bytes:
    return (
        b"From: a@centre.example\r\nSubject: x\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
        + disposition
        + b"\r\n\r\n%PDF-\r\n--b--\r\n"
    )


GBK_NAME = urllib.parse.quote("镕考试.pdf".encode("gbk")).encode()


@pytest.mark.parametrize(
    "disposition",
    [
        b'filename="' + _encoded_word("gb2312", "镕考试.pdf".encode("gbk")) + b'"',
        b"filename*=gb2312''" + GBK_NAME,
        b"filename*0*=gb2312''" + GBK_NAME[:9] + b";\r\n filename*1*=" + GBK_NAME[9:],
    ],
)
def test_file_names_decode_like_a_mail_client(disposition: bytes) -> None:
    assert [a.filename for a in parse(_file(disposition)).attachments] == ["镕考试.pdf"]


def test_a_garbled_subject_is_not_echoed_in_the_acknowledgement(
    mail_app: Flask, api_token: str, smtp_server
) -> None:  # type: ignore[no-untyped-def]
    subject = _encoded_word("utf-8", b"Exam \xff\xfe\xfd booking")
    raw = make_email(subject="placeholder", message_id="<garbled-1@college.example>")
    raw = raw.replace(b"Subject: placeholder", b"Subject: " + subject)
    posted = post_email(mail_app.test_client(), api_token, raw)
    reference = posted.get_json()["reference"]
    assert "\ufffd" in ticket(mail_app, reference).subject  # staff see what came
    assert deliver(mail_app) == 1
    [sent] = smtp_server[0].parsed()
    assert sent["Subject"] == f"[{reference}] Re: Your enquiry"


@pytest.mark.parametrize(
    ("name", "body_label"),
    [("Zoë Müller".encode(), None), ("Zoë Müller".encode("latin-1"), "iso-8859-1")],
)
def test_a_raw_8bit_sender_name_is_read_as_utf8_then_the_body_charset(
    name: bytes, body_label: str | None
) -> None:
    raw = _body(body_label, "café".encode(codec_for(body_label) or "utf-8"))
    raw = raw.replace(b"From: Jo <jo@college.example>", b"From: " + name + b" <zm@college.example>")
    email = parse(raw)
    assert (email.from_name, email.from_address) == ("Zoë Müller", "zm@college.example")
