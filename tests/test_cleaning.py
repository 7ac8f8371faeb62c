"""Cleaning keeps only what the centre wrote now."""

from __future__ import annotations

from triage.classifier.cleaning import (
    clean_body,
    clean_subject,
    html_to_text,
    latest_reply,
    model_text,
)


def test_strips_on_wrote_quote_and_iphone_footer() -> None:
    body = (
        "The exam has frozen again on PC 4.\n\nSent from my iPhone\n\n"
        "On Tue, 3 Mar 2026 at 09:12, IMI Support <support@imi.example> wrote:\n"
        "> Dear centre,\n> please turn the machine off and on again.\n"
    )
    text = latest_reply(body)
    assert text == "The exam has frozen again on PC 4."


def test_strips_outlook_header_block() -> None:
    body = (
        "Still not showing in invigilate.\n\n"
        "________________________________\n"
        "From: IMI Awards Support <support@imi.example>\n"
        "Sent: Tuesday, March 3, 2026 9:12 AM\n"
        "To: Jo Bloggs <jo@college.example>\n"
        "Subject: RE: exam\n\n"
        "Exams only show 48 hours before.\n"
    )
    assert latest_reply(body) == "Still not showing in invigilate."


def test_strips_signature_and_disclaimer() -> None:
    body = (
        "Where do we download the secure client from?\n\n"
        "Kind regards\n\nJane Doe\nExams Officer | Northfield College\nT: 0123 456789\n\n"
        "This email and any attachments are confidential and intended solely for the addressee. "
        "If you have received this email in error please notify the sender and delete it."
    )
    text = latest_reply(body)
    assert text == "Where do we download the secure client from?"


def test_greater_than_quoted_lines_only_after_new_text() -> None:
    body = "thanks, that worked\n> old question\n> more old"
    assert "old question" not in latest_reply(body)


def test_html_only_body_is_converted_and_scripts_dropped() -> None:
    html = (
        "<html><body><p>Learner is <b>absent</b> today</p><script>alert('x')</script></body></html>"
    )
    text = clean_body("", html)
    assert "Learner is absent today" in text
    assert "alert" not in text
    assert "<" not in html_to_text("<div>a &lt; b</div>").replace("a < b", "")


def test_html_in_the_text_part_is_converted_too() -> None:
    assert clean_body("<div>exam <i>frozen</i></div>") == "exam frozen"


def test_subject_prefixes_and_reference_removed() -> None:
    assert clean_subject("RE: Fwd: [IMI-000123] Exam locked") == "Exam locked"
    assert clean_subject("AW: re:help") == "help"


def test_subject_and_body_both_count() -> None:
    assert model_text("Extra time", "see below\n\nSent from my iPhone") == "Extra time\nsee below"


def test_message_that_is_only_quote_keeps_text() -> None:
    body = "> only quoted text\n> nothing new"
    assert latest_reply(body) == ""
    assert model_text("Re: exam frozen", body) == "exam frozen"


def test_huge_and_odd_input_is_bounded() -> None:
    text = latest_reply("x" * 1_000_000 + "\x00\r\n")
    assert len(text) <= 20_000


def test_forwarded_mail_keeps_the_note_and_the_forwarded_message() -> None:
    """Gmail, Apple Mail and Outlook forwards: the classifier reads the forwarder's note and what was forwarded."""
    gmail = (
        "Hi IMI, can you help with the below please?\n\nThanks,\nKate\n\n"
        "---------- Forwarded message ---------\nFrom: Tutor <tutor@college.example>\n"
        "Date: Thu, 26 Feb 2026 at 11:18\nSubject: Learner locked out\nTo: Kate <kate@college.example>\n\n"
        "Liam typed his keycode and the exam is now locked.\nKind regards\nTutor\n"
    )
    text = latest_reply(gmail)
    assert "can you help with the below" in text and "Learner locked out" in text
    assert "typed his keycode and the exam is now locked" in text
    assert "Tutor <tutor" not in text and "Kind regards" not in text
    apple = "See below.\n\nBegin forwarded message:\n\nFrom: IT <it@college.example>\nSubject: installer\n\nWhere is the SecureClient download?"
    assert latest_reply(apple) == "See below.\n\ninstaller\nWhere is the SecureClient download?"
    outlook = (
        "Please see below from our IT department.\n\n-----Original Message-----\nFrom: IT Servicedesk\n"
        "Sent: 03 March 2026 14:22\nTo: Ruth\nSubject: RE: installer link\n\nWe need the installer for 8 laptops.\nRegards\n"
    )
    assert model_text("FW: installer link", outlook) == (
        "installer link\nPlease see below from our IT department.\n\ninstaller link\nWe need the installer for 8 laptops."
    )


def test_reply_history_is_still_stripped_including_outlook_original_message_on_a_reply() -> None:
    reply = (
        "Thanks, that fixed it.\n\n-----Original Message-----\nFrom: IMI Awards Support\nSent: 14 October 2025 15:02\n"
        "Subject: RE: exam\n\nDear Mark, please restart SecureClient.\n"
    )
    assert model_text("Re: exam", reply) == "exam\nThanks, that fixed it."
    gmail_reply = "It froze again.\n\nOn Tue, 3 Mar 2026 at 09:12, IMI Support <\nsupport@imi.example> wrote:\n> restart it\n"
    assert latest_reply(gmail_reply) == "It froze again."
    quoted_forward = (
        "my answer\n> ---------- Forwarded message ---------\n> From: x\n> old forwarded text"
    )
    assert latest_reply(quoted_forward) == "my answer"


def test_reply_written_below_the_quote_is_found() -> None:
    body = "On Mon, 2 Mar 2026, IMI Support wrote:\n> Which PC?\n\nPC 4 in room B, it is frozen."
    assert latest_reply(body) == "PC 4 in room B, it is frozen."


def test_lists_and_external_sender_banners() -> None:
    body = (
        "CAUTION: This email originated from outside the organisation.\n\n"
        "These learners are missing:\n- Liam Brennan\n- Jade Oduya\n\nThanks\nJo"
    )
    assert latest_reply(body) == "These learners are missing:\n- Liam Brennan\n- Jade Oduya"


def test_a_forward_quoted_with_markers_keeps_the_forwarded_question() -> None:
    """Clients that forward inline with '>' markers: on a FW: subject the quoted lines are the
    forwarded message, read without their markers (also after the forwarder's sign-off)."""
    body = (
        "Can someone help with this please?\nThanks,\nMo\n\n"
        "> From: Sandra (invigilator)\n> I can't get the exam to unlock for the learner on PC 3."
    )
    assert model_text("Fwd: exam", body) == (
        "exam\nCan someone help with this please?\n\n"
        "I can't get the exam to unlock for the learner on PC 3."
    )
    assert model_text("Re: exam", body) == "exam\nCan someone help with this please?"
    dashes = (
        "See below\n\n---- Forwarded ----\nFrom: Kyle\nSubject: room prep\n\nWhat needs installing?"
    )
    assert (
        model_text("FW: room prep", dashes)
        == "room prep\nSee below\n\nroom prep\nWhat needs installing?"
    )
