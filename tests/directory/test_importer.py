"""Bulk CSV import on both backends: all rows with their certificates, or nothing; each row all-or-nothing."""

from pathlib import Path

import pytest
from dirhelp import finess, nir, rpps

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import importer, mailboxes, store
from carnet.directory.importer import ImportFileError, import_csv
from carnet.pki import authority

HEADER = "type,id_type,id,first_name,last_name,profession,specialty,organisations,name,city,services,ins,birth_name," \
         "first_names,birth_date,sex,birthplace,status,red_list\n"


def org_row(n: int, name: str, services: str = "") -> str:
    return f"organisation,FINESS,{finess(n)},,,,,,{name},Lyon,{services},,,,,,,,\n"


def pro_row(n: int, first: str = "Anne", last: str = "Martin", orgs: str = "", *, rpps_value: str | None = None) -> str:
    return f"professional,RPPS,{rpps_value or rpps(n)},{first},{last},10,SM26,{orgs},,,,,,,,,,,\n"


def pat_row(n: int, status: str = "VALI", *, ins: str | None = None, red: str = "") -> str:
    return f"patient,,,,,,,,,,,{ins or nir(n)},Durand,Léa,1990-02-03,F,69123,{status},{red}\n"


async def snapshot(db: Database) -> dict[str, int]:
    async with db.session() as session:
        rows = await store.count_rows(session)
    rows["certificates"] = len(await authority.list_certificates(db, profile="smime"))
    return rows


async def test_import_creates_every_mailbox_with_its_certificate(ca: Database, settings: Settings,
                                                                 tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(HEADER + org_row(1, "Hôpital Nord", "Accueil|Urgences") + pro_row(1, orgs="1" + finess(1))
                    + pro_row(2) + pro_row(3, "Paul", "Petit") + pat_row(1) + pat_row(2, red="yes"), encoding="utf-8")
    seen: list[tuple[int, int]] = []
    result = await import_csv(ca, settings, path, progress=lambda done, total: seen.append((done, total)))
    assert result.committed and not result.rejected
    assert (result.rows, result.imported, result.mailboxes) == (6, 6, 7)
    assert seen[-1] == (7, 7)
    listed = await mailboxes.list_mailboxes(ca, include_red_list=True)
    assert sorted(m.address for m in listed if m.kind.value != "PAT") == [
        "accueil@carnet.test", "anne.martin2@carnet.test", "anne.martin@carnet.test", "paul.petit@carnet.test",
        "urgences@carnet.test"]
    for info in listed:
        record = await authority.get_certificate(ca, info.certificate_serial)
        assert record.status() == "valid" and record.emails == (info.address,)
    # Running the same file again imports nothing new: everything is already present.
    again = await import_csv(ca, settings, path)
    assert again.committed and again.imported == 0 and again.already_present == 6


async def test_bad_rows_import_nothing_by_default(ca: Database, settings: Settings, tmp_path: Path) -> None:
    await mailboxes.add_professional(ca, settings, mailboxes.ProfessionalInput("RPPS", rpps(9), "Déjà", "Là", "10"))
    before = await snapshot(ca)
    bad_ins = nir(5)[:-2] + f"{(int(nir(5)[-2:]) % 97) + 1:02d}"
    document = (HEADER + pro_row(1) + pro_row(2, rpps_value="10000000020") + pat_row(3) + pat_row(4, "PROV")
                + pat_row(5, ins=bad_ins) + pro_row(6, orgs="1" + finess(42)) + pro_row(1, "Twin", "Row")
                + pro_row(9) + "professional,RPPS,' OR 1=1 --,A,B,10,,,,,,,,,,,,,\n")
    path = tmp_path / "bad.csv"
    path.write_text(document, encoding="utf-8")
    result = await import_csv(ca, settings, path)
    assert not result.committed
    reasons = {r.line: r.reason for r in result.rejected}
    assert sorted(reasons) == [3, 5, 6, 7, 8, 10]
    assert "Luhn check digit 0 does not match the first 10 digits, expected 5" in reasons[3]
    assert "identity status PROV" in reasons[5]
    assert "INS key" in reasons[6] and "does not match 13 digits" in reasons[6]
    assert f"organisation 1{finess(42)} is not in the directory" in reasons[7]
    assert "already appears on line 2" in reasons[8]
    assert "only digits" in reasons[10]
    assert result.already_present == 1  # line 9
    assert await snapshot(ca) == before  # nothing half-imported: no row, no certificate

    skipping = await import_csv(ca, settings, path, skip_invalid=True)
    assert skipping.committed and skipping.imported == 2 and len(skipping.rejected) == 6
    after = await snapshot(ca)
    assert after["dir_mailboxes"] == before["dir_mailboxes"] + 2
    assert after["certificates"] == before["certificates"] + 2


async def test_file_level_errors(ca: Database, settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="unknown column 'password'"):
        await import_csv(ca, settings, "type,password\nprofessional,secret\n")
    with pytest.raises(ImportFileError, match="'type' column"):
        await import_csv(ca, settings, "id,name\n1,2\n")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes((HEADER + pro_row(1, "Hélène")).encode("latin-1"))
    with pytest.raises(ImportFileError, match="is not UTF-8"):
        await import_csv(ca, settings, latin1)
    semicolons = HEADER.replace(",", ";") + pro_row(1).replace(",", ";")
    assert (await import_csv(ca, settings, "\ufeff" + semicolons)).imported == 1


async def test_a_row_failing_at_write_time_is_rolled_back_alone(ca: Database, settings: Settings,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = importer.write_patient
    doomed = nir(2)

    async def flaky(session, pat, address, serial, *, red_list=False):  # type: ignore[no-untyped-def]
        if pat.ins.matricule == doomed:
            raise RuntimeError("constraint violated")
        return await real(session, pat, address, serial, red_list=red_list)

    monkeypatch.setattr(importer, "write_patient", flaky)
    result = await import_csv(ca, settings, HEADER + pat_row(1) + pro_row(1) + pat_row(2) + pat_row(3))
    assert result.imported == 3 and [r.line for r in result.rejected] == [4]
    assert "not written (RuntimeError: constraint violated)" in result.rejected[0].reason
    certificates = await authority.list_certificates(ca, profile="smime")
    revoked = [c for c in certificates if c.revoked_at is not None]
    assert len(certificates) == 4 and len(revoked) == 1 and revoked[0].revocation_reason == "cessationOfOperation"
    assert revoked[0].emails[0].startswith(doomed.lower())
    assert await mailboxes.lookup_mailbox(ca, revoked[0].emails[0]) is None
