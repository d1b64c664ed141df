"""The one settings object of carnet.

Values come, highest priority first, from keyword overrides, the environment (``CARNET_*``; nested values with
``__``, e.g. ``CARNET_LISTEN__HTTP=0.0.0.0:443``), an optional TOML file (``--config FILE`` or
``CARNET_CONFIG``), then the defaults. The defaults work with no configuration at all: data under ``./var``,
SQLite inside it, listeners on loopback with non-privileged ports.

Nothing is read at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
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

    @classmethod
    def loopback_any_port(cls) -> Listeners:
        """Every listener on 127.0.0.1 with a port chosen by the system (tests, benchmarks)."""
        any_port = "127.0.0.1:0"
        return cls(http=any_port, smtp_relay=any_port, smtp_submission=any_port, smtp_submissions=any_port,
                   smtp_trusted=any_port, imap=any_port, imaps=any_port)


class PkiSettings(BaseModel):
    """Certificate authority and S/MIME validation settings."""

    default_key_type: KeyType = "rsa2048"
    #: Validity of end-entity certificates, in days.
    leaf_validity_days: int = Field(default=3 * 365, ge=1, le=3650)
    #: How long a CRL or an OCSP answer stays fresh (nextUpdate - thisUpdate), in hours.
    revocation_validity_hours: int = Field(default=24, ge=1, le=24 * 30)
    #: Refuse a signature whose revocation status cannot be established (RFC 5280 §6.3 "hard fail").
    revocation_hard_fail: bool = True


class TrustedNetwork(BaseModel):
    """A client network allowed to inject mail without AUTH (a lab system, a hospital information system).

    Everything it sends goes out as ``sender`` — an organisation (ORG/CAB) or app (APP) mailbox, given as its address
    or as a local part of our domain — and is signed with that mailbox's key.
    """

    network: str
    sender: str

    @field_validator("network")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return str(ipaddress.ip_network(value.strip(), strict=False))


class MtaLimits(BaseModel):
    """Limits every SMTP listener enforces (RFC 5321 §4.5.3.1 gives the minimums a server must accept)."""

    #: Largest message (SIZE, RFC 1870), octets.
    max_message_size: int = Field(default=20 * 1024 * 1024, ge=64 * 1024)
    #: Recipients per transaction (RFC 5321 §4.5.3.1.8: at least 100 must be accepted).
    max_recipients: int = Field(default=100, ge=1)
    #: Octets of the top-level header block.
    max_header_size: int = Field(default=64 * 1024, ge=4096)
    #: MIME nesting depth (multipart and message/rfc822 levels).
    max_mime_depth: int = Field(default=16, ge=1)
    #: MIME parts in the whole message.
    max_mime_parts: int = Field(default=500, ge=1)
    #: Transactions per connection before 421 (0 = unlimited).
    max_transactions_per_session: int = Field(default=10_000, ge=0)


InboundAction = Literal["accept", "reject", "defer"]


def _default_inbound_policy() -> dict[str, InboundAction]:
    policy: dict[str, InboundAction] = dict.fromkeys(
        (
            "unsigned",
            "bad_signature",
            "tampered",
            "untrusted",
            "expired",
            "not_yet_valid",
            "revoked",
            "wrong_usage",
            "from_mismatch",
            "malformed",
            "decrypt_failed",
        ),
        "reject",
    )
    policy["valid"] = "accept"
    policy["revocation_unknown"] = "defer"
    return policy


def _default_trusted_networks() -> list[TrustedNetwork]:
    return [
        TrustedNetwork(network="127.0.0.0/8", sender="laboratoire"),
        TrustedNetwork(network="::1/128", sender="laboratoire"),
    ]


def _default_retry_schedule() -> list[timedelta]:
    minutes = (1, 5, 15, 30, 60, 120, 240)
    return [timedelta(minutes=m) for m in minutes]


class MtaSettings(BaseModel):
    """The MTA (:mod:`carnet.mta`): trusted networks, routing, the outbound queue, limits and inbound policy."""

    #: Name in the SMTP greeting, EHLO and Received fields; empty: the mail domain.
    hostname: str = ""
    #: Networks of the trusted-network listener (``listen.smtp_trusted``), each bound to the mailbox it sends as.
    trusted_networks: list[TrustedNetwork] = Field(default_factory=_default_trusted_networks)
    #: Static routes ``{domain: "host:port"}``, consulted before the trust space's relay endpoints and DNS MX.
    transport_map: dict[str, str] = Field(default_factory=dict)
    #: DNS servers asked for MX and address records (``"ip"`` or ``"ip:port"``, ``"[ipv6]:port"``); empty: the
    #: system's resolver (``/etc/resolv.conf``).
    dns_servers: list[str] = Field(default_factory=list)
    #: Port of the MX hosts (RFC 5321 §5.1: 25); another value is only useful for tests.
    mx_port: int = Field(default=25, ge=1, le=65535)
    #: How long a message stays in the outbound queue before a failure DSN (RFC 5321 §4.5.4.1: 4-5 days).
    queue_lifetime: timedelta = timedelta(days=5)
    #: Delays between delivery attempts; the last one repeats until the lifetime is over.
    retry_schedule: list[timedelta] = Field(default_factory=_default_retry_schedule, min_length=1)
    #: A "delayed" DSN (RFC 3464 action=delayed) once a recipient has waited this long.
    delay_dsn_after: timedelta = timedelta(hours=4)
    #: Seconds between two looks at the queue when idle.
    queue_poll_interval: float = Field(default=1.0, gt=0)
    #: Parallel outbound SMTP transactions per process.
    queue_concurrency: int = Field(default=8, ge=1)
    #: Seconds to connect to / wait for a peer's SMTP answer.
    smtp_timeout: float = Field(default=60.0, gt=0)
    #: Per status of the S/MIME check of relayed mail: accept, reject (5.7.x) or defer (4.7.x). Keys are
    #: :class:`carnet.pki.smime.Status` values, plus ``revocation_unknown`` (chain fine, revocation not established).
    inbound_policy: dict[str, InboundAction] = Field(default_factory=_default_inbound_policy)
    #: Send a signed "processed" MDN when a delivered message asks for one (RFC 8098).
    automatic_mdn: bool = True
    #: Up to this many SMTP transactions are committed together (group commit).
    group_commit_size: int = Field(default=64, ge=1)
    limits: MtaLimits = Field(default_factory=MtaLimits)

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, values: list[str]) -> list[str]:
        for value in values:
            split_dns_server(value)
        return values


def split_dns_server(value: str) -> tuple[str, int]:
    """``"192.0.2.1"``, ``"192.0.2.1:5353"``, ``"[2001:db8::1]:5353"`` → (IP address, port)."""
    host, port = value.strip(), "53"
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"DNS server {value!r} must be an IP address, optionally with :port") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"DNS server {value!r}: bad port")
    return host, int(port)


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
    mta: MtaSettings = Field(default_factory=MtaSettings)
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
