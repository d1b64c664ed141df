"""``carnet directory …`` and ``carnet trust …`` end to end, in process, on both backends."""

import io
from pathlib import Path

import pytest
from dirhelp import finess, nir, rpps

from carnet.cli import main


def run(capsys: pytest.CaptureFixture[str], data: Path, db_url: str, *argv: str,
        stdin: str | None = None, monkeypatch: pytest.MonkeyPatch | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(["--data", str(data), "--database-url", db_url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_directory_commands(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                            db_url: str) -> None:
    monkeypatch.setenv("CARNET_KEY_SECRET", "cli test secret")
    monkeypatch.setenv("CARNET_TEST_MODE", "true")
    data = tmp_path / "var"

    def carnet(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        return run(capsys, data, db_url, *argv, stdin=stdin, monkeypatch=monkeypatch)

    code, _out, err = carnet("directory", "add-professional", "--rpps", rpps(1), "--first-name", "Anne",
                             "--last-name", "Martin", "--profession", "10")
    assert code == 2 and "run `carnet init` first" in err
    assert carnet("init", "--domain", "cli.test")[0] == 0
    monkeypatch.setenv("CARNET_DOMAIN", "cli.test")

    code, out, _ = carnet("directory", "add-organisation", "--finess", finess(1), "--name", "Hôpital Nord",
                          "--city", "Lyon", "--service", "Accueil")
    assert code == 0 and "accueil@cli.test  ORG" in out
    code, out, _ = carnet("directory", "add-professional", "--rpps", rpps(1), "--first-name", "Anne", "--last-name",
                          "Martin", "--profession", "10", "--organisation", "1" + finess(1), "--password-stdin",
                          stdin="a long enough password\n")
    assert code == 0 and out.startswith("anne.martin@cli.test  PER  Anne Martin  certificate ")
    code, _out, err = carnet("directory", "add-professional", "--rpps", "10000000020", "--first-name", "X",
                             "--last-name", "Y", "--profession", "10")
    assert code == 2 and "Luhn check digit 0 does not match the first 10 digits, expected 5" in err
    code, out, _ = carnet("directory", "add-patient", "--ins", nir(1), "--birth-name", "Durand", "--first-names",
                          "Léa", "--birth-date", "1990-01-02", "--sex", "F", "--birthplace", "69123", "--status",
                          "VALI")
    assert code == 0 and "@patient.cli.test  PAT" in out

    code, out, _ = carnet("directory", "show", "anne.martin@cli.test")
    assert "national_id" in out and "8" + rpps(1) in out and "password_set" in out
    code, out, _ = carnet("directory", "search", "anne")
    assert "anne.martin@cli.test" in out and "1 result(s)" in out
    code, out, _ = carnet("directory", "list")
    assert "3 mailbox(es)" in out

    code, out, _ = carnet("directory", "app-password", "create", "anne.martin@cli.test", "--label", "phone")
    secret = out.splitlines()[1]
    assert code == 0 and len(secret) == 23
    code, out, _ = carnet("directory", "app-password", "list", "anne.martin@cli.test")
    assert "phone" in out and "active" in out
    assert carnet("directory", "app-password", "revoke", "anne.martin@cli.test", "1")[0] == 0
    code, _out, err = carnet("directory", "set-password", "anne.martin@cli.test", "--password-stdin", stdin="short\n")
    assert code == 2 and "at least 12" in err
    assert carnet("directory", "red-list", "anne.martin@cli.test", "on")[0] == 0
    assert "0 result(s)" in carnet("directory", "search", "anne")[1]
    assert carnet("directory", "send-as", "grant", "accueil@cli.test", "anne.martin@cli.test")[0] == 0
    code, out, _ = carnet("directory", "renew", "anne.martin@cli.test", "--key-type", "p256")
    assert code == 0 and "superseded" in out
    code, out, _ = carnet("directory", "disable", "anne.martin@cli.test")
    assert code == 0 and "revoked" in out
    code, _out, err = carnet("directory", "show", "nobody@cli.test")
    assert code == 2 and "no mailbox nobody@cli.test" in err

    csv = tmp_path / "import.csv"
    csv.write_text("type,id_type,id,first_name,last_name,profession\n"
                   f"professional,RPPS,{rpps(2)},Paul,Petit,10\nprofessional,RPPS,123,Bad,Row,10\n")
    code, _out, err = carnet("directory", "import", str(csv), "--quiet")
    assert code == 2 and "line 3:" in err and "nothing imported" in err
    code, out, err = carnet("directory", "import", str(csv), "--skip-invalid", "--key-type", "p256")
    assert code == 1 and "1 identities imported" in out and "line 3:" in err


def test_trust_commands(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                        db_url: str) -> None:
    monkeypatch.setenv("CARNET_KEY_SECRET", "cli test secret")
    peer_data, our_data = tmp_path / "peer", tmp_path / "ours"
    peer_url = f"sqlite:///{tmp_path / 'peer.db'}"
    assert run(capsys, peer_data, peer_url, "init", "--domain", "peer.test")[0] == 0
    monkeypatch.setenv("CARNET_DOMAIN", "peer.test")
    code, out, _ = run(capsys, peer_data, peer_url, "trust", "export", "--whitelist",
                       str(tmp_path / "peer.xml"), "--bundle", str(tmp_path / "peer.p7b"), "--directory-url",
                       "https://annuaire.peer.test/directory", "--relay", "mx.peer.test:25")
    assert code == 0
    assert run(capsys, our_data, db_url, "init", "--domain", "ours.test")[0] == 0
    monkeypatch.setenv("CARNET_DOMAIN", "ours.test")
    code, out, _ = run(capsys, our_data, db_url, "trust", "import", "--whitelist",
                       str(tmp_path / "peer.xml"), "--bundle", str(tmp_path / "peer.p7b"))
    assert code == 0 and "trusted peer.test, patient.peer.test" in out
    code, out, _ = run(capsys, our_data, db_url, "trust", "list")
    assert "https://annuaire.peer.test/directory" in out and "mx.peer.test:25" in out
    code, out, err = run(capsys, our_data, db_url, "trust", "add", "x.test",
                         "--name", "X", "--ca-bundle", str(tmp_path / "peer.xml"))
    assert code == 2 and "not a PKCS#7 bundle" in err
    assert run(capsys, our_data, db_url, "trust", "remove", "peer.test")[0] == 0
    code, out, _ = run(capsys, our_data, db_url, "trust", "list")
    assert [line.split()[0] for line in out.splitlines()] == ["patient.peer.test"]
