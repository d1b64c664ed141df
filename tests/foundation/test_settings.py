"""The settings object: defaults, environment, TOML file, validation, secrets."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from carnet.config import async_url, load_settings


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("CARNET_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.domain == "carnet.localhost"
    assert settings.data_dir == Path("var")
    assert settings.sqlalchemy_url == f"sqlite+aiosqlite:///{Path('var').resolve() / 'carnet.db'}"
    assert settings.listen.imap.startswith("127.0.0.1:")
    assert settings.pki_base_url == "https://carnet.localhost/pki"


def test_environment_overrides_toml_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "carnet.toml"
    config.write_text('domain = "toml.example"\ndata_dir = "/srv/carnet"\n[listen]\nimap = "0.0.0.0:143"\n')
    monkeypatch.setenv("CARNET_DOMAIN", "env.example")
    monkeypatch.setenv("CARNET_LISTEN__HTTP", "0.0.0.0:443")
    settings = load_settings(config)
    assert settings.domain == "env.example"  # environment beats the file
    assert settings.data_dir == Path("/srv/carnet")  # file beats the default
    assert settings.listen.imap == "0.0.0.0:143"
    assert settings.listen.http == "0.0.0.0:443"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "carnet.toml"
    config.write_text('domain = "from-file.example"\n')
    monkeypatch.delenv("CARNET_DOMAIN", raising=False)
    monkeypatch.setenv("CARNET_CONFIG", str(config))
    assert load_settings().domain == "from-file.example"


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize("domain", ["localhost", "bad domain.fr", "-x.fr", "a..fr", ""])
def test_bad_domain_refused(domain: str) -> None:
    with pytest.raises(ValidationError, match="fully qualified"):
        load_settings(domain=domain)


def test_unknown_setting_refused(tmp_path: Path) -> None:
    config = tmp_path / "carnet.toml"
    config.write_text('domian = "typo.example"\n')
    with pytest.raises(ValidationError, match="domian"):
        load_settings(config)


def test_key_secret_never_shown(tmp_path: Path) -> None:
    settings = load_settings(key_secret="s3cr3t-value", data_dir=tmp_path)
    assert "s3cr3t-value" not in repr(settings)
    assert "s3cr3t-value" not in str(settings.model_dump())
    assert settings.key_encryption_secret() == b"s3cr3t-value"


def test_generated_key_secret_is_private_and_stable(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "var")
    first = settings.key_encryption_secret()
    assert len(first) >= 32
    path = tmp_path / "var" / "secrets" / "kek"
    assert path.stat().st_mode & 0o777 == 0o600
    assert settings.key_encryption_secret() == first


def test_async_url_mapping() -> None:
    assert async_url("postgresql://postgres@127.0.0.1:5432/x") == "postgresql+asyncpg://postgres@127.0.0.1:5432/x"
    assert async_url("sqlite:////tmp/a.db") == "sqlite+aiosqlite:////tmp/a.db"
    assert async_url("sqlite+aiosqlite:///a.db") == "sqlite+aiosqlite:///a.db"
