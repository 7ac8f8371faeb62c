"""Service configuration read from the environment, with safe defaults for a laptop."""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """Configuration that stops start-up; its message is one line meant for the operator."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass
class Settings:
    """Every setting the service reads; `from_env` fills it from environment variables."""

    instance_path: Path = REPO_ROOT / "instance"
    database_url: str = ""
    secret_key: str = ""
    models_dir: Path = REPO_ROOT / "models"
    training_data_dir: Path = REPO_ROOT / "training_data"
    # mail
    support_address: str = "support@imi-awards.example"
    support_name: str = "IMI Awards Centre Support"
    mail_domain: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout: int = 30
    outbox_dir: Path | None = None
    outbox_max_attempts: int = 8
    outbox_connections: int = 4  # SMTP connections each worker process sends over at once
    outbox_lease_seconds: float = 600.0  # a claim not renewed this long was left by a dead worker
    outbox_backlog_alert_seconds: int = 900  # /healthz degraded when due mail waits longer
    outage_warn_seconds: int = 120  # a warning once the database or a transport fails this long
    outage_remind_seconds: int = 300  # then a reminder at most this often
    imap_host: str = ""
    imap_port: int = 993
    imap_user: str = ""
    imap_password: str = ""
    imap_folder: str = "INBOX"
    imap_tls: bool = True
    imap_processed_folder: str = ""
    # mail providers' inbound webhooks (each off until its credentials are set)
    mailgun_signing_key: str = ""
    mailgun_max_age: int = 300  # seconds a Mailgun signature's timestamp stays acceptable
    sendgrid_inbound_user: str = ""
    sendgrid_inbound_password: str = ""
    postmark_inbound_user: str = ""
    postmark_inbound_password: str = ""
    channels_file: Path | None = None  # TOML: more mail channels (Microsoft 365, Google, ...)
    channel_alert_minutes: int = 30  # a channel failing this long notifies the admins
    inbound_max_bytes: int = 10 * 1024 * 1024
    attachment_max_bytes: int = 5 * 1024 * 1024
    sender_hourly_cap: int = 10
    domain_hourly_cap: int = (
        50  # automatic mails to one sender domain (registrable) per hour (0: no cap)
    )
    trusted_authserv_id: str = (
        ""  # our receiving server's authserv-id: its Authentication-Results are believed
    )
    response_time_text: str = (
        "within one working day"  # when acknowledgements say staff will answer
    )
    api_rate_per_minute: int = 1200  # requests per API token per minute (0: no limit)
    # staff sign-in: TOTP for password logins, and OpenID Connect with Microsoft or Google
    totp_required_for_admins: bool = False
    signin_microsoft_client_id: str = ""
    signin_microsoft_client_secret: str = ""
    signin_microsoft_tenant_id: str = ""
    signin_microsoft_authority_host: str = "https://login.microsoftonline.com"
    signin_google_client_id: str = ""
    signin_google_client_secret: str = ""
    signin_google_domain: str = ""
    signin_google_discovery_url: str = (
        "https://accounts.google.com/.well-known/openid-configuration"
    )
    external_url: str = (
        "http://127.0.0.1:5000"  # the web app's address: links in alerts and answers
    )
    feedback_link_days: int = 30  # how long the "Did this answer your question?" links work
    feedback_rate_per_minute: int = 30  # feedback page requests per client address (0: no limit)
    secure_cookies: bool = False  # set SECURE_COOKIES=true behind HTTPS (production)
    trusted_proxies: int = (
        0  # reverse proxies in front of the app whose X-Forwarded-For/-Proto are believed
    )
    log_format: str = "text"  # LOG_FORMAT=json for JSON lines (production)
    worker_interval: float = 5.0
    worker_nice: int = 10  # the worker's CPU priority below the web processes (0-19; 0: the same)
    model_check_interval: float = 10.0
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from environment variables, applying defaults for anything unset."""
        env = os.environ.get
        instance = Path(env("TRIAGE_INSTANCE_PATH") or REPO_ROOT / "instance").resolve()
        s = cls(instance_path=instance)
        s.database_url = env("DATABASE_URL") or ""
        s.secret_key = env("SECRET_KEY") or ""
        s.models_dir = Path(env("MODELS_DIR") or s.models_dir).resolve()
        s.training_data_dir = Path(env("TRAINING_DATA_DIR") or s.training_data_dir).resolve()
        s.support_address = env("SUPPORT_ADDRESS") or s.support_address
        s.support_name = env("SUPPORT_NAME") or s.support_name
        s.mail_domain = env("MAIL_DOMAIN") or ""
        s.smtp_host = env("SMTP_HOST") or ""
        s.smtp_port = _env_int("SMTP_PORT", 25)
        s.smtp_user = env("SMTP_USER") or ""
        s.smtp_password = env("SMTP_PASSWORD") or ""
        s.smtp_starttls = _env_bool("SMTP_STARTTLS", False)
        s.smtp_timeout = _env_int("SMTP_TIMEOUT", 30)
        outbox_dir = env("OUTBOX_DIR")
        s.outbox_dir = Path(outbox_dir).resolve() if outbox_dir else None
        s.outbox_max_attempts = _env_int("OUTBOX_MAX_ATTEMPTS", 8)
        s.outbox_connections = _env_int("OUTBOX_CONNECTIONS", s.outbox_connections)
        if not 1 <= s.outbox_connections <= 32:
            raise ConfigError("OUTBOX_CONNECTIONS must be from 1 to 32")
        s.outbox_lease_seconds = _env_int("OUTBOX_LEASE_SECONDS", int(s.outbox_lease_seconds))
        if s.outbox_lease_seconds < 30:
            raise ConfigError("OUTBOX_LEASE_SECONDS must be 30 or more")
        s.outbox_backlog_alert_seconds = _env_int(
            "OUTBOX_BACKLOG_ALERT_SECONDS", s.outbox_backlog_alert_seconds
        )
        s.outage_warn_seconds = _env_int("OUTAGE_WARN_SECONDS", s.outage_warn_seconds)
        s.outage_remind_seconds = _env_int("OUTAGE_REMIND_SECONDS", s.outage_remind_seconds)
        if min(s.outbox_backlog_alert_seconds, s.outage_warn_seconds, s.outage_remind_seconds) < 1:
            raise ConfigError(
                "OUTBOX_BACKLOG_ALERT_SECONDS, OUTAGE_WARN_SECONDS and OUTAGE_REMIND_SECONDS must "
                "be 1 or more"
            )
        s.imap_host = env("IMAP_HOST") or ""
        s.imap_port = _env_int("IMAP_PORT", 993)
        s.imap_user = env("IMAP_USER") or ""
        s.imap_password = env("IMAP_PASSWORD") or ""
        s.imap_folder = env("IMAP_FOLDER") or "INBOX"
        s.imap_tls = _env_bool("IMAP_TLS", True)
        s.imap_processed_folder = env("IMAP_PROCESSED_FOLDER") or ""
        s.mailgun_signing_key = env("MAILGUN_SIGNING_KEY") or ""
        s.mailgun_max_age = _env_int("MAILGUN_MAX_AGE", s.mailgun_max_age)
        if not 10 <= s.mailgun_max_age <= 86400:
            raise ConfigError("MAILGUN_MAX_AGE must be from 10 to 86400 seconds")
        s.sendgrid_inbound_user = env("SENDGRID_INBOUND_USER") or ""
        s.sendgrid_inbound_password = env("SENDGRID_INBOUND_PASSWORD") or ""
        s.postmark_inbound_user = env("POSTMARK_INBOUND_USER") or ""
        s.postmark_inbound_password = env("POSTMARK_INBOUND_PASSWORD") or ""
        channels_file = env("CHANNELS_FILE")
        s.channels_file = Path(channels_file).resolve() if channels_file else None
        s.channel_alert_minutes = _env_int("CHANNEL_ALERT_MINUTES", s.channel_alert_minutes)
        if s.channel_alert_minutes < 1:
            raise ConfigError("CHANNEL_ALERT_MINUTES must be 1 or more")
        s.inbound_max_bytes = _env_int("INBOUND_MAX_BYTES", s.inbound_max_bytes)
        s.attachment_max_bytes = _env_int("ATTACHMENT_MAX_BYTES", s.attachment_max_bytes)
        s.sender_hourly_cap = _env_int("SENDER_HOURLY_CAP", s.sender_hourly_cap)
        s.domain_hourly_cap = _env_int("DOMAIN_HOURLY_CAP", s.domain_hourly_cap)
        if s.domain_hourly_cap < 0:
            raise ConfigError("DOMAIN_HOURLY_CAP must be 0 (no cap) or more")
        s.trusted_authserv_id = (env("TRUSTED_AUTHSERV_ID") or "").strip()
        s.response_time_text = (env("RESPONSE_TIME_TEXT") or "").strip() or s.response_time_text
        s.api_rate_per_minute = _env_int("API_RATE_PER_MINUTE", s.api_rate_per_minute)
        # idle sleep when nothing wakes it
        s.worker_interval = _env_int("WORKER_INTERVAL", int(s.worker_interval))
        s.worker_nice = _env_int("WORKER_NICE", s.worker_nice)
        if not 0 <= s.worker_nice <= 19:
            raise ConfigError("WORKER_NICE must be from 0 (web priority) to 19 (lowest)")
        if s.api_rate_per_minute < 0:
            raise ConfigError("API_RATE_PER_MINUTE must be 0 (no limit) or more")
        s.totp_required_for_admins = _env_bool("TOTP_REQUIRED_FOR_ADMINS", False)
        s.signin_microsoft_client_id = (env("SIGNIN_MICROSOFT_CLIENT_ID") or "").strip()
        s.signin_microsoft_client_secret = env("SIGNIN_MICROSOFT_CLIENT_SECRET") or ""
        s.signin_microsoft_tenant_id = (env("SIGNIN_MICROSOFT_TENANT_ID") or "").strip()
        s.signin_microsoft_authority_host = (
            env("SIGNIN_MICROSOFT_AUTHORITY_HOST") or s.signin_microsoft_authority_host
        ).rstrip("/")
        s.signin_google_client_id = (env("SIGNIN_GOOGLE_CLIENT_ID") or "").strip()
        s.signin_google_client_secret = env("SIGNIN_GOOGLE_CLIENT_SECRET") or ""
        s.signin_google_domain = (env("SIGNIN_GOOGLE_DOMAIN") or "").strip().lower()
        s.signin_google_discovery_url = (
            env("SIGNIN_GOOGLE_DISCOVERY_URL") or s.signin_google_discovery_url
        )
        s.feedback_link_days = _env_int("FEEDBACK_LINK_DAYS", s.feedback_link_days)
        if s.feedback_link_days < 1:
            raise ConfigError("FEEDBACK_LINK_DAYS must be 1 or more")
        s.feedback_rate_per_minute = _env_int(
            "FEEDBACK_RATE_PER_MINUTE", s.feedback_rate_per_minute
        )
        if s.feedback_rate_per_minute < 0:
            raise ConfigError("FEEDBACK_RATE_PER_MINUTE must be 0 (no limit) or more")
        s.secure_cookies = _env_bool("SECURE_COOKIES", False)
        s.trusted_proxies = _env_int("TRUSTED_PROXIES", 0)
        if not 0 <= s.trusted_proxies <= 10:
            raise ConfigError(
                "TRUSTED_PROXIES must be the number of proxies in front of the app, 0 to 10"
            )
        s.external_url = (env("EXTERNAL_URL") or s.external_url).strip().rstrip("/")
        if not s.external_url.startswith(("http://", "https://")) or any(
            c.isspace() or c in "<>\"'" for c in s.external_url
        ):
            raise ConfigError(
                f"EXTERNAL_URL must be an http:// or https:// address, got {s.external_url!r}"
            )
        s.log_format = (env("LOG_FORMAT") or "text").strip().lower()
        if s.log_format not in {"text", "json"}:
            raise ConfigError(f"LOG_FORMAT must be text or json, got {s.log_format!r}")
        return s

    def update(self, overrides: dict[str, object]) -> None:
        """Apply overrides given by name (used by tests and by `create_app(config=...)`)."""
        names = {f.name for f in fields(self)}
        for key, value in overrides.items():
            name = key.lower()
            if name in names:
                if (
                    name
                    in {
                        "instance_path",
                        "models_dir",
                        "training_data_dir",
                        "outbox_dir",
                        "channels_file",
                    }
                    and value
                ):
                    value = Path(str(value)).resolve()
                setattr(self, name, value)
            else:
                self.extra[key] = value

    def prepare_instance(self) -> None:
        """Create the instance folder, and fill in the database URL and secret key defaults inside
        it."""
        try:
            self.instance_path.mkdir(mode=0o700, parents=True, exist_ok=True)
            # the database, its WAL, the secret and outgoing mail live here
            self.instance_path.chmod(0o700)
            with tempfile.TemporaryFile(
                dir=self.instance_path
            ) as probe:  # a name of its own: processes start together
                probe.write(b"ok")
        except OSError as exc:
            raise ConfigError(
                f"instance folder {self.instance_path} is not writable: {exc.strerror}"
            ) from None
        if not self.database_url:
            self.database_url = f"sqlite:///{self.instance_path / 'triage.db'}"
            # SQLite gives new -wal and -shm files the database's mode
            for suffix in (
                "",
                "-wal",
                "-shm",
            ):
                if not suffix or (self.instance_path / f"triage.db{suffix}").exists():
                    private_file(self.instance_path / f"triage.db{suffix}")
        if not self.secret_key:
            self.secret_key = _load_or_create_secret(self.instance_path / "secret_key")
        if not self.mail_domain:
            self.mail_domain = self.support_address.rpartition("@")[2] or "localhost"
        if self.outbox_dir is None and not self.smtp_host:
            self.outbox_dir = self.instance_path / "outbox"


def private_file(path: Path) -> None:
    """Create `path` readable and writable by its owner only (0600), or restrict it if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    path.chmod(0o600)


def _load_or_create_secret(path: Path) -> str:
    """The secret key kept in `path` (0600), made on first use; processes that start together on a
    new instance folder all get the one that was written first (it appears whole, or not at all)."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = secrets.token_hex(32)
    fd, written = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        try:
            os.link(written, path)  # fails if another process made it meanwhile
        except FileExistsError:
            held = path.read_text().strip()
            if held:
                return held
            os.replace(written, path)  # an empty file from before: ours takes its place
        except OSError:  # a filesystem without hard links: written whole all the same
            os.replace(written, path)
    finally:
        Path(written).unlink(missing_ok=True)
    return value
