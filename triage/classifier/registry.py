"""Model versions on disk (models/<version>/) and in the database, with activation and safe
loading."""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import tempfile
import threading
import time
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from triage.classifier.compat import register_renamed_modules
from triage.classifier.decision import Thresholds
from triage.classifier.model import TrainedModel
from triage.orm import AuditEvent, ModelVersion, utcnow
from triage.states import AuditAction, ModelStatus

ARTIFACT = "model.joblib"
METADATA = "metadata.json"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelLoadError(Exception):
    """A model that cannot be used, with a message saying what to do."""


def new_version_name(now: datetime | None = None) -> str:
    """A sortable, unique version name from the time, e.g. v20261126-103000-3fa2."""
    return (now or utcnow()).strftime("v%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def version_dir(models_dir: Path, version: str) -> Path:
    """The folder of a version, refusing names that could point outside the models directory."""
    if not _VERSION_RE.match(version or ""):
        raise ModelLoadError(f"invalid model version name {version!r}")
    root = models_dir.resolve()
    path = (root / version).resolve()
    if path.parent != root:
        raise ModelLoadError(f"model version {version!r} is outside the models directory {root}")
    return path


def save(model: TrainedModel, models_dir: Path) -> Path:
    """Write the artifact and metadata.json into models/<version>/ atomically; returns the
    folder."""
    version = model.version
    target = version_dir(models_dir, version)
    if target.exists():
        raise ModelLoadError(f"model version {version} already exists in {models_dir}")
    models_dir.mkdir(parents=True, exist_ok=True)
    metadata = dict(model.metadata)
    metadata.update(
        {
            "sklearn_version": sklearn.__version__,
            "python_version": platform.python_version(),
            "thresholds": model.thresholds.to_dict(),
            "classes": model.classes,
        }
    )
    model.metadata = metadata
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=models_dir))
    try:
        joblib.dump(model.pipeline, staging / ARTIFACT, compress=3)
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def read_metadata(models_dir: Path, version: str) -> dict[str, Any]:
    """The metadata.json of a version."""
    path = version_dir(models_dir, version) / METADATA
    try:
        metadata: dict[str, Any] = json.loads(path.read_text())
        return metadata
    except FileNotFoundError:
        raise ModelLoadError(f"model version {version} not found in {models_dir}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"model version {version}: unreadable metadata: {exc}") from None


def load(models_dir: Path, version: str) -> TrainedModel:
    """Load a version from the models directory only, refusing a scikit-learn version mismatch."""
    metadata = read_metadata(models_dir, version)
    trained_with = metadata.get("sklearn_version")
    if trained_with != sklearn.__version__:
        raise ModelLoadError(
            f"model {version} was trained with scikit-learn {trained_with}, "
            f"this is {sklearn.__version__}; retrain it with: flask --app app triage train"
        )
    artifact = version_dir(models_dir, version) / ARTIFACT
    if not artifact.is_file():
        raise ModelLoadError(
            f"model version {version}: {ARTIFACT} is missing from {artifact.parent}"
        )
    pipeline = _load_pipeline(str(artifact), artifact.stat().st_mtime_ns)
    return TrainedModel(pipeline, Thresholds.from_dict(metadata["thresholds"]), metadata)


@lru_cache(maxsize=4)
def _load_pipeline(path: str, _mtime_ns: int) -> Any:
    """Versions never change once written, so one process loads each artifact once (the mtime guards
    that)."""
    register_renamed_modules()  # files saved before a module moved name its old path
    return joblib.load(path)


def register(
    session: Session, model: TrainedModel, trained_by: str, gate_passed: bool, gate_reason: str
) -> ModelVersion:
    """Record a saved version in the database registry."""
    row = ModelVersion(
        version=model.version,
        status=ModelStatus.CANDIDATE if gate_passed else ModelStatus.REJECTED,
        data_sha256=str(model.metadata.get("training_data_sha256", "")),
        sklearn_version=sklearn.__version__,
        metrics=model.metadata.get("metrics", {}),
        trained_by=trained_by,
        gate_passed=gate_passed,
        gate_reason=gate_reason,
    )
    session.add(row)
    session.add(
        AuditEvent(
            actor=trained_by,
            action=AuditAction.MODEL_TRAINED,
            details={"version": model.version, "gate_passed": gate_passed, "reason": gate_reason},
        )
    )
    return row


def activate(session: Session, version: str, by: str, allow_rejected: bool = False) -> ModelVersion:
    """Make a registered version the active one (the previous one becomes retired)."""
    row = session.scalars(select(ModelVersion).where(ModelVersion.version == version)).one_or_none()
    if row is None:
        raise ModelLoadError(f"model version {version} is not in the registry")
    if not row.gate_passed and not allow_rejected:
        raise ModelLoadError(
            f"model version {version} failed the quality gate ({row.gate_reason}); use --force"
        )
    previous = active_version(session)
    session.execute(
        update(ModelVersion)
        .where(ModelVersion.status == ModelStatus.ACTIVE)
        .values(status=ModelStatus.RETIRED)
    )
    row.status, row.promoted_by, row.activated_at = ModelStatus.ACTIVE, by, utcnow()
    session.add(
        AuditEvent(
            actor=by,
            action=AuditAction.MODEL_ACTIVATED,
            details={"version": version, "previous": previous},
        )
    )
    return row


def activate_checked(
    session: Session, models_dir: Path, version: str, by: str, allow_rejected: bool = False
) -> None:
    """Activate a version only after checking it loads here (artifact present, same
    scikit-learn)."""
    load(models_dir, version)
    activate(session, version, by, allow_rejected)


def rollback(session: Session, models_dir: Path, by: str) -> str:
    """Re-activate the version that was active before the current one; returns its name."""
    version = previous_version(session)
    if version is None:
        raise ModelLoadError("no earlier active version to roll back to")
    activate_checked(session, models_dir, version, f"{by} (rollback)")
    return version


def previous_version(session: Session) -> str | None:
    """The most recently activated version other than the active one, for rollback."""
    query = (
        select(ModelVersion.version)
        .where(ModelVersion.status == ModelStatus.RETIRED, ModelVersion.activated_at.is_not(None))
        .order_by(ModelVersion.activated_at.desc())
    )
    return session.scalars(query).first()


def active_version(session: Session) -> str | None:
    """The active version's name, or None."""
    return session.scalars(
        select(ModelVersion.version).where(ModelVersion.status == ModelStatus.ACTIVE)
    ).first()


class ModelProvider:
    """Keeps the active model loaded, checking the database for a newer active version at most every
    few seconds."""

    def __init__(
        self, sessions: sessionmaker[Session], models_dir: Path, check_interval: float = 10.0
    ) -> None:
        self.sessions = sessions
        self.models_dir = models_dir
        self.check_interval = check_interval
        self._lock = threading.Lock()
        self._model: TrainedModel | None = None
        self._checked_at = float("-inf")

    def current(self) -> TrainedModel:
        """The active model, reloaded when another process has activated a different version."""
        now = time.monotonic()
        if self._model is not None and now - self._checked_at < self.check_interval:
            return self._model
        with self._lock:
            if self._model is None or now - self._checked_at >= self.check_interval:
                with self.sessions() as session:
                    version = active_version(session)
                if version is None:
                    raise ModelLoadError("no active model; run: flask --app app triage train")
                if self._model is None or self._model.version != version:
                    self._model = load(self.models_dir, version)
                self._checked_at = now
            return self._model

    def refresh(self) -> None:
        """Force a check on the next call."""
        self._checked_at = float("-inf")
