"""Ticket resolution and sender domain; admin-editable macros seeded for every category.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 17:30:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# first drafts, one per category (the FAQ's 17 and `other`); admins edit them under Admin > Macros
# Frozen history: what this revision seeded, never to be edited here. The catalogue now holds each
# category's seed; a migrate run that creates this table replaces these untouched drafts with it
# (triage.commands.migrate -> triage.helpdesk.macros.seed_from_catalogue).
MACROS: list[tuple[str, str, str]] = [
    (
        "exam_access_secureclient",
        "1. Where does the candidate go to get into their exam",
        "Candidates sit their exams in SecureClient, which needs to be installed on each computer that the exams are to be sat on.\n\nTo get SecureClient:\n\n1. Go to the Centres area of the IMI Awards website.\n2. Open Secure Centre Information.\n3. Use the SecureClient link there to install it on every computer your candidates will sit their exams on.",
    ),
    (
        "cannot_unlock_exam",
        "2. Cannot unlock exam",
        "Please check that the candidate has entered their keycode. The exam cannot be unlocked until they have.",
    ),
    (
        "exam_locked_after_keycode",
        "3. Candidate has put in their keycode and it shows that exam is locked",
        "Once a candidate has entered their keycode, the invigilator needs to unlock the exam in SecureAssess.\n\nTo avoid this in future, you can unlock exams with a PIN code instead of the invigilator unlocking each candidate's exam:\n\n1. You can set a PIN 48 hours before the exam: in SecureAssess, highlight the relevant exams and click Set PIN.\n2. Enter a PIN: any combination of four numbers (a four-digit PIN). You can use the same PIN for every exam, every time.\n3. On the day, after the candidates have entered their keycodes, they are asked for the PIN. The invigilator tells them the PIN and the candidates unlock their own exams.",
    ),
    (
        "unlock_with_pin",
        "4. Unlocking exams with a PIN code",
        "You can use a PIN code instead of the invigilator unlocking each candidate's exam individually. Here is how:\n\n1. You can set a PIN 48 hours before the exam: in SecureAssess, highlight the relevant exams and click Set PIN.\n2. A box appears asking you to enter a PIN. Choose any combination of four numbers (a four-digit PIN).\n3. On the day of the exam, after the candidates have entered their keycodes, they are asked to enter the PIN.\n4. The invigilator tells the candidates the PIN, and the candidates unlock their own exams by entering it.\n\nYou can have the same PIN for every exam and use the same PIN every time.",
    ),
    (
        "exam_frozen",
        "5. Exam has frozen",
        "A frozen exam can usually be fixed by restarting the computer:\n\n1. Turn the computer off, without voiding, pausing or completing the exam.\n2. Turn the computer on again.\n3. Re-enter the candidate's keycode.\n\nThe invigilator also has the option to pause the assessment in SecureAssess, so that the candidate's time does not run out while you do this.",
    ),
    (
        "candidate_not_on_schedule_list",
        "6. Candidate not showing on scheduling list",
        "Please check that you are in SecureAssess, and not in the IMI Awards on-line assessment area.\n\nIf you are in the correct area and the candidate is still not showing on the scheduling list, let us know.",
    ),
    (
        "qualification_not_showing",
        "7. Qualification not showing for centre",
        "Thank you for letting us know. We have checked your centre's record and the qualification is now set up for your centre in SecureAssess.\n\nPlease log out of SecureAssess and log back in; the qualification should then be in the list when you schedule. If it still does not show, reply to this email with your centre number and the full title of the qualification and we will look into it again.",
    ),
    (
        "no_exam_for_qualification",
        "8. Qualification is showing but there is no exam showing",
        "Thank you for letting us know. We have checked, and the exam for this qualification is now available to your centre in SecureAssess.\n\nPlease log out of SecureAssess and log back in, then schedule the exam as usual. If it still does not show, reply to this email with your centre number, the qualification and the exam you are looking for, and we will look into it again.",
    ),
    (
        "how_to_schedule_exam",
        "9. How to schedule an exam",
        "Exams are scheduled in SecureAssess by your FS Centre Coordinator.\n\nYou will find guidance on scheduling on the IMI Awards website:\n\n1. Go to the Centres area of the IMI Awards website.\n2. Click the Secure Centre Information navigation button.\n3. Follow the guidance there to schedule the assessments in SecureAssess.",
    ),
    (
        "extra_time",
        "10. How can the candidate be given extra time",
        "You can add up to 25% extra time yourself when you schedule the exam, without asking us for permission first.\n\nAnything greater than 25% must be applied for as a Reasonable Adjustment.\n\nPlease keep a record of the extra time you give: centres are required to keep records for inspection.",
    ),
    (
        "exam_not_in_invigilate",
        "11. Centre has scheduled an exam but it is not showing in Invigilate section of SecureAssess",
        "This is expected: a scheduled exam only shows in the Invigilate section of SecureAssess 48 hours before the exam.\n\nIf the exam is still more than 48 hours away, it will appear there once it is within 48 hours of the start.",
    ),
    (
        "results_release_dates",
        "12. When will the exam results be released",
        "Exam results are released on the published results release dates. Please see the results release dates for the date that applies to your candidates' exams.\n\nOnce the results are released, you will find them under the Reporting tab in SecureAssess.",
    ),
    (
        "obtain_results",
        "13. Where can the Centre obtain their results",
        "You can view and print results in SecureAssess:\n\n1. Open the Reporting tab in SecureAssess.\n2. Click Reports.\n3. View or print the results by candidate or by exam.\n\nCertificates can be applied for using Web Portal 2, as normal.",
    ),
    (
        "paper_based_exams",
        "14. How can the Centre apply for paper based exams",
        "To apply for paper-based exams:\n\n1. Complete Form 45, the 'Paper Assessment Request Form'.\n2. Return it to IMI Awards.\n\n30 days' notice is required for assessment papers, so please send us the form at least 30 days before the exam.",
    ),
    (
        "errors_within_exam",
        "15. Errors within exam, e.g. question not showing, duplicate questions/answers",
        "Thank you for reporting this, and sorry for the trouble it caused your candidates. We have passed the details to our assessment team to review the question.\n\nWe will let you know what they find and what it means for the candidates affected. If you have not already told us, please reply with the exam, the date and time it was sat, the question number and the names of the candidates affected.",
    ),
    (
        "candidate_absent",
        "16. Candidate is absent",
        "If a candidate is absent, nothing needs to be done. The exam will just overrun and cancel itself out, and it will be available the next day to re-schedule.\n\nIf you know in advance, you can cancel or delete an exam up to 48 hours before the exam.\n\nPlease do not void the exam: it is not advisable to void exams at any time.",
    ),
    (
        "reschedule_missed_exam",
        "17. Candidate missed scheduled exam and is greyed out in 'Create Exam'",
        "Thank you for letting us know. We have reset the candidate's exam, so they are no longer greyed out in 'Create Exam'.\n\nYou can now schedule the exam for them again in SecureAssess within the current window, as usual.",
    ),
    (
        "other",
        "Other enquiry",
        "Thank you for your email.\n\nThis is not something we can deal with through centre support for on-screen exams, so we have passed it to the right team at IMI Awards, who will reply to you directly.",
    ),
]


def upgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("centre_domain", sa.String(length=253), nullable=True))
        batch.add_column(sa.Column("resolution", sa.String(length=64), nullable=True))
        batch.create_index("ix_tickets_centre_domain", ["centre_domain"], unique=False)
    _backfill_centre_domain()
    macros = op.create_table(
        "macros",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by_id"], ["users.id"], name=op.f("fk_macros_updated_by_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_macros")),
    )
    op.create_index(op.f("ix_macros_category"), "macros", ["category"], unique=False)
    now = datetime.now(UTC)
    op.bulk_insert(
        macros,
        [
            {"title": title, "category": slug, "body": body, "created_at": now, "updated_at": now}
            for slug, title, body in MACROS
        ],
    )


def _backfill_centre_domain() -> None:
    """Existing tickets get their sender's registrable domain, so the per-domain cap counts them too."""
    from publicsuffixlist import PublicSuffixList

    suffixes = PublicSuffixList()
    tickets = sa.table(
        "tickets",
        sa.column("id", sa.Integer()),
        sa.column("centre_email", sa.String()),
        sa.column("centre_domain", sa.String()),
    )
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(tickets.c.id, tickets.c.centre_email)
            .where(tickets.c.id > last)
            .order_by(tickets.c.id)
            .limit(1000)
        ).all()
        if not rows:
            return
        for ticket_id, email in rows:
            host = (email or "").rpartition("@")[2].strip(".").lower()
            domain = (suffixes.privatesuffix(host) or host)[:253] if host else None
            bind.execute(sa.update(tickets).where(tickets.c.id == ticket_id).values(centre_domain=domain))
        last = rows[-1][0]


def downgrade() -> None:
    op.drop_index(op.f("ix_macros_category"), table_name="macros")
    op.drop_table("macros")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_index("ix_tickets_centre_domain")
        batch.drop_column("resolution")
        batch.drop_column("centre_domain")
