"""The one settings object: every value can come from a ``MODELRUNNER_*`` environment variable, or from
the file a ``MODELRUNNER_*_FILE`` variable names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from modelrunner.errors import ModelrunnerError
from modelrunner.process_log import LogFormat, LogLevel
from modelrunner.spec.automation_spec import ProfileSpec
from modelrunner.spec.workspace import Workspace


class _FileSettings(PydanticBaseSettingsSource):
    """``MODELRUNNER_<NAME>_FILE``: the setting's value is that file's content, as the field's
    container images do, so a secret (a session key, a database URL with its password) need not
    sit in any process's environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = os.environ.get(f"MODELRUNNER_{field_name.upper()}_FILE")
        if path is None:
            return None, field_name, False
        try:
            return Path(path).read_text(encoding="utf-8").strip(), field_name, False
        except OSError as exc:
            raise ModelrunnerError(
                f"MODELRUNNER_{field_name.upper()}_FILE: cannot read {path}: {exc.strerror or exc}"
            ) from exc

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """Configuration of one modelrunner process; passed explicitly, never read from a global."""

    model_config = SettingsConfigDict(env_prefix="MODELRUNNER_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # A value given as a variable wins over one given as a file.
        return init_settings, env_settings, _FileSettings(settings_cls), dotenv_settings, file_secret_settings

    workspace: Path = Field(default=Path("."), description="Folder with modelrunner.yaml and models")
    data_dir: Path | None = Field(
        default=None,
        description="State folder (SQLite file, logs, scratch); <workspace>/.modelrunner",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; a SQLite file in the data folder by default"
    )
    artifacts_url: str | None = Field(
        default=None,
        description="fsspec URL of the artifact store; <data_dir>/artifacts by default",
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = Field(
        default=None,
        description="The URL at which attempts reach this server (their progress callbacks), and links in "
        "notifications point to; http://host:port by default",
    )
    local_slots: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    lease_seconds: float = Field(default=30.0, gt=0, description="How long a claimed attempt lives without a heartbeat")
    grace_seconds: float = Field(default=10.0, ge=0, description="SIGTERM to SIGKILL delay")
    poll_seconds: float = Field(default=1.0, gt=0, description="Fallback wake-up of the dispatcher")
    profile: str | None = Field(
        default=None, description="A profile of modelrunner.yaml (storage, slots, publish steps, automatic runs)"
    )
    log_level: LogLevel = Field(default=LogLevel.INFO, description="The least severe lines the server logs")
    log_format: LogFormat = Field(
        default=LogFormat.TEXT, description="text: lines for people; json: one JSON object a line, for log systems"
    )

    # Everything a caller sends has a size limit (a request over one is refused with 413 or 422
    # naming it): one caller must not be able to exhaust the server's memory or fill its store.
    max_body_bytes: int = Field(
        default=1 << 20, ge=1024, description="Largest request body (JSON, forms) a route reads, in bytes"
    )
    max_upload_bytes: int = Field(
        default=10 << 30,
        ge=1024,
        description="Largest file a worker stores for its attempt (PUT /api/v1/attempts/{id}/files/...), in bytes; "
        "streamed to disk, never held in memory",
    )
    max_log_append_bytes: int = Field(
        default=4 << 20,
        ge=1 << 20,
        description="Largest chunk of a log a runner appends in one request (POST /api/v1/attempts/{id}/log), "
        "in bytes; runners send 1 MiB at most",
    )
    max_params: int = Field(default=100, ge=1, description="Most parameters (top-level keys) a run may be given")
    max_param_string_length: int = Field(
        default=65536, ge=1, description="Longest string, in characters, anywhere in a run's parameters"
    )
    max_param_list_length: int = Field(default=10000, ge=1, description="Longest list anywhere in a run's parameters")
    max_batch_runs: int = Field(
        default=1000, ge=1, description="Most runs one batch submit (POST /api/v1/models/{name}/runs/batch) may ask for"
    )
    list_params_bytes: int = Field(
        default=2048,
        ge=64,
        description="Most bytes of a run's parameters (as JSON) that a list of runs shows; longer ones are cut "
        "short and marked params_truncated",
    )
    log_page_bytes: int = Field(
        default=1 << 20, ge=1024, description="Most bytes of a run's log one request answers with; clients page on"
    )

    session_secret: SecretStr | None = Field(
        default=None,
        description="Key that signs the web UI's session cookies; without it, a random key kept in "
        "<data_dir>/session.key (give every server behind one address the same key)",
    )
    session_idle_seconds: float = Field(
        default=12 * 3600.0, gt=0, description="A web UI session unused this long ends (the user signs in again)"
    )
    session_max_age_seconds: float = Field(
        default=14 * 86400.0, gt=0, description="A web UI session ends this long after sign-in, however much it is used"
    )
    session_cookie_secure: bool = Field(
        default=False,
        description="Mark the session cookie Secure on every answer; without it, only on requests that came "
        "over HTTPS (as uvicorn sees them, X-Forwarded-Proto included from trusted proxies)",
    )
    secrets_key_file: Path | None = Field(
        default=None,
        description="File with the keys that encrypt webhook secrets in the database (one Fernet key a line, "
        "newest first); <data_dir>/secrets.key by default, created (mode 0600) on first need",
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description="The Fernet keys that encrypt webhook secrets, comma-separated, newest first; instead of "
        "secrets_key_file (keep them out of the database's backups)",
    )

    def with_profile(self) -> tuple[Settings, ProfileSpec]:
        """These settings with the profile's values under every value set explicitly (a flag or
        a ``MODELRUNNER_*`` variable), and the profile; NotFound for an unknown profile."""
        if self.profile is None:
            return self, ProfileSpec()
        profile = Workspace(self.workspace).profile(self.profile)
        given = {
            name: value
            for name, value in profile.model_dump(include={"database_url", "artifacts_url", "local_slots"}).items()
            if value is not None and name not in self.model_fields_set
        }
        return self.model_copy(update=given), profile

    @property
    def state_dir(self) -> Path:
        return (self.data_dir or self.workspace / ".modelrunner").resolve()

    @property
    def resolved_secrets_key_file(self) -> Path:
        return (self.secrets_key_file or self.state_dir / "secrets.key").resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / 'modelrunner.db'}"

    @property
    def resolved_public_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def resolved_artifacts_url(self) -> str:
        return self.artifacts_url or str(self.state_dir / "artifacts")
