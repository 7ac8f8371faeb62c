"""Charset labels that name no codec: the text is still read (as UTF-8), never a rejected email."""

from __future__ import annotations

import pytest

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
