"""Model commands: train, evaluate, classify, and the `models` registry group."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import click
from sqlalchemy import select

from triage.classifier import registry
from triage.classifier.classify_stream import run as classify_run
from triage.classifier.dataset import TEST_FILE, TRAIN_FILE, DatasetError, Example, load_jsonl
from triage.classifier.evaluation import evaluate, format_report
from triage.classifier.model import TrainedModel
from triage.classifier.training import train
from triage.commands import app_settings, ready_engine, reports_config_errors, sessions, triage_cli
from triage.database import transaction
from triage.orm import ModelVersion
from triage.routing import routing_map


def _load_model(version: str | None) -> TrainedModel:
    settings = app_settings()
    try:
        if version is None:
            with sessions()() as session:
                version = registry.active_version(session)
            if version is None:
                raise click.ClickException("no active model; run: flask --app app triage train")
        return registry.load(settings.models_dir, version)
    except registry.ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None


def _load_data(path: Path) -> list[Example]:
    try:
        return load_jsonl(path)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None


@triage_cli.command("train")
@click.option(
    "--no-activate", is_flag=True, help="Register the new version but do not make it active."
)
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing when an active model loads fine (used by make run).",
)
@click.option("--jobs", default=2, show_default=True, help="Parallel cross-validation jobs.")
@reports_config_errors
def train_command(no_activate: bool, if_missing: bool, jobs: int) -> None:
    """Train from training_data/, write models/<version>/, print metrics, activate if it passes the
    gate."""
    settings = app_settings()
    ready_engine(migrate_sqlite=True)
    if if_missing:
        with sessions()() as session:
            version = registry.active_version(session)
        if version is not None:
            try:
                registry.load(settings.models_dir, version)
                click.echo(f"active model {version} is present; not retraining")
                return
            except registry.ModelLoadError as exc:
                click.echo(f"active model unusable ({exc}); training a new one")
    train_set = _load_data(settings.training_data_dir / TRAIN_FILE)
    test_set = _load_data(settings.training_data_dir / TEST_FILE)
    version = registry.new_version_name()
    click.echo(
        f"training {version} on {len(train_set)} emails; held-out test set: {len(test_set)} emails"
    )
    result = train(train_set, test_set, version, n_jobs=jobs)
    registry.save(result.model, settings.models_dir)
    click.echo("\n== grouped cross-validation (out-of-fold, by writer) ==")
    click.echo(format_report(result.cv_report))
    if result.test_report:
        click.echo("\n== held-out test file ==")
        click.echo(format_report(result.test_report))
    by = f"cli:{getpass.getuser()}"
    with transaction(sessions()) as session:
        registry.register(session, result.model, by, result.passed, "; ".join(result.gate_reasons))
        if result.passed and not no_activate:
            registry.activate(session, version, by)
    if not result.passed:
        click.echo(f"\nmodel {version} NOT activated: it misses the quality gate:", err=True)
        for reason in result.gate_reasons:
            click.echo(f"  - {reason}", err=True)
        sys.exit(1)
    click.echo(
        f"\nmodel {version} saved to {settings.models_dir / version}"
        + ("" if no_activate else " and activated")
    )


@triage_cli.command("evaluate")
@click.option(
    "--data",
    "data_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSONL file (default: the held-out test file; with --policies, the training file).",
)
@click.option("--model", "version", help="Model version (default: the active one).")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the JSON report.",
)
@click.option(
    "--policies",
    is_flag=True,
    help="Compare the threshold policies by nested leave-one-writer-out evaluation on the "
    "training file (fits the model once per fold; no trained model needed) and print the "
    "comparison table.",
)
@click.option(
    "--jobs", default=2, show_default=True, help="Parallel cross-validation jobs (with --policies)."
)
@reports_config_errors
def evaluate_command(
    data_file: Path | None, version: str | None, output: Path | None, policies: bool, jobs: int
) -> None:
    """Per-category scores, per-writer precision, risk-coverage, confusion matrix and auto-reply
    figures."""
    settings = app_settings()
    if policies:
        _compare_policies(data_file or settings.training_data_dir / TRAIN_FILE, output, jobs)
        return
    ready_engine(migrate_sqlite=True)
    model = _load_model(version)
    data_file = data_file or settings.training_data_dir / TEST_FILE
    examples = _load_data(data_file)
    with sessions()() as session:
        routing = routing_map(session)
    decisions = model.decide([ex.pair for ex in examples], routing)
    report = evaluate([ex.label for ex in examples], decisions, [ex.group for ex in examples])
    report.update({"model_version": model.version, "data_file": str(data_file)})
    click.echo(f"model {model.version} on {data_file}")
    click.echo(format_report(report))
    output = (
        output
        or settings.instance_path / "reports" / f"evaluation-{model.version}-{data_file.stem}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    click.echo(f"\nJSON report written to {output}")


def _compare_policies(data_file: Path, output: Path | None, jobs: int) -> None:
    """Nested leave-one-writer-out comparison of the threshold policies on a labelled file."""
    from triage.classifier import policies
    from triage.classifier.training import (
        POLICY,
        POLICY_TARGET,
        acknowledgements,
        out_of_fold_probabilities,
    )

    examples = _load_data(data_file)
    groups = [ex.group for ex in examples]
    if not all(groups) or len(set(groups)) < 3:
        raise click.ClickException(
            f"{data_file}: --policies needs a writer (group) on every line and 3 or more writers"
        )
    click.echo(
        f"out-of-fold probabilities for {len(examples)} emails by {len(set(groups))} writers ...",
        err=True,
    )
    probs, classes = out_of_fold_probabilities(examples, n_jobs=jobs)
    scored = policies.Scored.build(
        [ex.label for ex in examples], probs, classes, acknowledgements(examples)
    )
    results = policies.compare_policies(scored, groups, progress=lambda m: click.echo(m, err=True))
    best = policies.best_policy(results)
    click.echo(policies.comparison_table(results, best))
    click.echo(
        "\nkept by the rule (highest worst-writer precision at mean writer precision >= 0.98, "
        f"then coverage): {best.policy} fitted to {best.target:.2f}; "
        f"training uses {POLICY} fitted to {POLICY_TARGET:.2f}"
    )
    click.echo("\nper writer (precision / coverage / auto-replies):")
    writers = sorted(best.per_writer)
    click.echo("| policy | fitted to | " + " | ".join(writers) + " |")
    click.echo("|---|---|" + "---|" * len(writers))
    for r in results:
        cells = [
            f"{o.precision:.3f} / {o.coverage:.2f} / {o.replies}"
            for o in (r.per_writer[w] for w in writers)
        ]
        click.echo(f"| {r.policy} | {r.target:.2f} | " + " | ".join(cells) + " |")
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps([r.as_dict() for r in results], indent=2) + "\n")
        click.echo(f"\nJSON written to {output}")


@triage_cli.command("classify")
@click.option("--model", "version", help="Model version (default: the active one).")
@reports_config_errors
def classify_command(version: str | None) -> None:
    """Read JSON Lines {id, subject, body} on stdin; write one decision per line on stdout."""
    ready_engine(migrate_sqlite=True)
    model = _load_model(version)
    with sessions()() as session:
        routing = routing_map(session)
    failed = classify_run(sys.stdin, sys.stdout, model, routing)
    if failed:
        click.echo(f"{failed} line(s) could not be classified", err=True)
        sys.exit(1)


@triage_cli.command("retrain")
@click.option("--jobs", default=2, show_default=True, help="Parallel cross-validation jobs.")
@reports_config_errors
def retrain_command(jobs: int) -> None:
    """Retrain with staff-confirmed tickets; promote the challenger only if it is no worse than the
    champion."""
    from triage.classifier.retraining import retrain

    settings = app_settings()
    ready_engine(migrate_sqlite=True)
    outcome = retrain(
        sessions(), settings, f"cli:{getpass.getuser()}", n_jobs=jobs, progress=click.echo
    )
    c = outcome.challenger
    click.echo(
        f"data: {outcome.n_train} training emails ({outcome.n_tickets_train} from tickets), "
        f"sha256 {outcome.data_sha256}"
    )
    click.echo(f"frozen evaluation set: {outcome.n_eval} emails")
    line = "{}: macro-F1 {:.3f}, auto-reply precision {:.3f}, coverage {:.3f}"
    click.echo(
        line.format(
            f"challenger {outcome.version}",
            c["macro_f1"],
            c["auto_reply"]["precision"],
            c["auto_reply"]["coverage"],
        )
    )
    if outcome.champion:
        ch = outcome.champion
        click.echo(
            line.format(
                f"champion {outcome.champion_version}",
                ch["macro_f1"],
                ch["auto_reply"]["precision"],
                ch["auto_reply"]["coverage"],
            )
        )
    click.echo(f"gate decided by {outcome.decided_by}: {outcome.explanation}")
    if outcome.promoted:
        click.echo(f"promoted {outcome.version}")
    else:
        click.echo("kept the champion: " + "; ".join(outcome.reasons))
        sys.exit(1)


@triage_cli.group("models")
def models_group() -> None:
    """The model registry: list versions, activate one, roll back."""


@models_group.command("list")
@reports_config_errors
def models_list() -> None:
    """List versions, newest first, with their gate result and key test figures."""
    ready_engine(migrate_sqlite=True)
    with sessions()() as session:
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())).all()
    if not rows:
        click.echo("no model versions; run: flask --app app triage train")
    for row in rows:
        test = (row.metrics or {}).get("test") or {}
        auto = test.get("auto_reply", {})
        figures = (
            (
                f"test macro-F1 {test['macro_f1']:.3f}, "
                f"auto-reply precision {auto['precision']:.3f}, "
                f"coverage {auto['coverage']:.3f}"
            )
            if test
            else "no test figures"
        )
        click.echo(
            f"{row.version:20} {row.status:9} {row.created_at:%Y-%m-%d %H:%M} "
            f"by {row.trained_by}: {figures}"
        )


@models_group.command("activate")
@click.argument("version")
@click.option("--force", is_flag=True, help="Also activate a version that failed the quality gate.")
@reports_config_errors
def models_activate(version: str, force: bool) -> None:
    """Make VERSION the active model (running processes pick it up within seconds)."""
    ready_engine(migrate_sqlite=True)
    try:
        with transaction(sessions()) as session:
            registry.activate_checked(
                session, app_settings().models_dir, version, f"cli:{getpass.getuser()}", force
            )
    except registry.ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"model {version} is now active")


@models_group.command("rollback")
@reports_config_errors
def models_rollback() -> None:
    """Re-activate the version that was active before the current one."""
    ready_engine(migrate_sqlite=True)
    try:
        with transaction(sessions()) as session:
            version = registry.rollback(
                session, app_settings().models_dir, f"cli:{getpass.getuser()}"
            )
    except registry.ModelLoadError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"rolled back: model {version} is now active")
