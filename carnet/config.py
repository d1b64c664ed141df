"""The one settings object of carnet.

Values come, highest priority first, from keyword overrides, the environment (``CARNET_*``; nested values with
``__``, e.g. ``CARNET_LISTEN__HTTP=0.0.0.0:443``), an optional TOML file (``--config FILE`` or
``CARNET_CONFIG``), then the defaults. The defaults work with no configuration at all: data under ``./var``,
SQLite inside it, listeners on loopback with non-privileged ports.

Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

KeyType = Literal["rsa2048", "rsa3072", "p256"]


class Listeners(BaseModel):
    """Addresses (``host:port``) the servers listen on. Development defaults: loopback, ports above 1024."""

    http: str = "127.0.0.1:8080"
    smtp_relay: str = "127.0.0.1:2525"
    smtp_submission: str = "127.0.0.1:5870"
    smtp_submissions: str = "127.0.0.1:4650"
    smtp_trusted: str = "127.0.0.1:2526"
    imap: str = "127.0.0.1:1430"
    imaps: str = "127.0.0.1:9930"


class PkiSettings(BaseModel):
    """Certificate authority and S/MIME validation settings."""

    default_key_type: KeyType = "rsa2048"
    #: Validity of end-entity certificates, in days.
    leaf_validity_days: int = Field(default=3 * 365, ge=1, le=3650)
    #: How long a CRL or an OCSP answer stays fresh (nextUpdate - thisUpdate), in hours.
    revocation_validity_hours: int = Field(default=24, ge=1, le=24 * 30)
    #: Refuse a signature whose revocation status cannot be established (RFC 5280 §6.3 "hard fail").
    revocation_hard_fail: bool = True


class Settings(BaseSettings):
    """Every setting carnet reads. One instance per process, passed explicitly."""

    model_config = SettingsConfigDict(
        env_prefix="CARNET_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    #: The mail domain this instance serves (addresses, certificates, TLS name).
    domain: str = "carnet.localhost"
    #: Where keys, CRLs, the SQLite database and logs live.
    data_dir: Path = Path("var")
    #: SQLAlchemy URL; empty means SQLite at ``DATA_DIR/carnet.db``. ``postgresql://…`` selects asyncpg.
    database_url: str = ""
    #: Secret protecting private keys at rest. Empty: a random one is created at ``DATA_DIR/secrets/kek``.
    key_secret: SecretStr = SecretStr("")
    #: Test mode: accepts test and demo identifiers (INS test OIDs) that production refuses.
    test_mode: bool = False
    listen: Listeners = Field(default_factory=Listeners)
    pki: PkiSettings = Field(default_factory=PkiSettings)
    config_file: Path | None = None

    @field_validator("domain")
    @classmethod
    def _domain_is_a_hostname(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        labels = value.split(".")
        if len(labels) < 2 or any(
            not label or len(label) > 63 or not label.replace("-", "").isalnum() or label[0] == "-"
            for label in labels
        ):
            raise ValueError(f"domain {value!r} is not a fully qualified host name")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml_path = _config_path(init_settings)
        if toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_path))
        return tuple(sources)

    # Derived values -------------------------------------------------------------------------------------

    @property
    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL: ``sqlite+aiosqlite`` or ``postgresql+asyncpg``."""
        return async_url(self.database_url or f"sqlite:///{self.data_dir.resolve() / 'carnet.db'}")

    @property
    def pki_base_url(self) -> str:
        """Where CRLs, OCSP and CA certificates are published (named in every certificate)."""
        return f"https://{self.domain}/pki"

    def key_encryption_secret(self) -> bytes:
        """The key-encryption secret; creates the random one under the data directory on first use."""
        configured = self.key_secret.get_secret_value()
        if configured:
            return configured.encode()
        path = self.data_dir / "secrets" / "kek"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        return path.read_text().strip().encode()


def _config_path(init_settings: PydanticBaseSettingsSource) -> Path | None:
    explicit = init_settings().get("config_file") if callable(init_settings) else None
    raw = explicit or os.environ.get("CARNET_CONFIG") or os.environ.get("CARNET_CONFIG_FILE")
    return Path(raw) if raw else None


def async_url(url: str) -> str:
    """Map a plain database URL to the async driver SQLAlchemy needs (aiosqlite, asyncpg)."""
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.removeprefix("sqlite://")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, environment, the TOML file and defaults."""
    if config_file is not None:
        overrides["config_file"] = Path(config_file)
        if not Path(config_file).is_file():
            raise FileNotFoundError(f"configuration file {config_file} does not exist")
    return Settings(**overrides)
