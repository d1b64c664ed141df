"""Demo identities for ``carnet demo``: a few S/MIME certificates issued once, and where to find them.

- Dr Anne Martin, a physician, ``anne.martin@DOMAIN``, national identifier ``"8" + RPPS`` with a valid Luhn key
  (the RPPS is an 11-digit number whose last digit is a Luhn check digit, as in the ANS RPPS specification);
- Camille Durand, a patient, ``camille.durand@patient.DOMAIN`` (patients' addresses live under ``patient.DOMAIN``;
  patient certificates carry no national identifier: the INS never appears in a certificate);
- the cardiology secretariat of a demo clinic, ``secretariat.cardiologie@DOMAIN``, an organisation mailbox issued by
  the ``organisations`` CA.

Running it again issues nothing new while the demo certificates are valid.
"""

from __future__ import annotations

from dataclasses import dataclass

from carnet.config import Settings
from carnet.db import Database
from carnet.pki import authority


def luhn_check_digit(digits: str) -> str:
    """The Luhn (mod 10) check digit to append to ``digits`` (ISO/IEC 7812-1 Annex B)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str(-total % 10)


def rpps_national_id(rpps_stem: str) -> str:
    """IGC-Santé national identifier of a professional: ``"8"`` + the RPPS (10-digit stem + Luhn digit)."""
    return "8" + rpps_stem + luhn_check_digit(rpps_stem)


@dataclass(frozen=True, slots=True)
class DemoIdentity:
    local_part: str
    common_name: str
    subdomain: str | None = None
    national_id: str | None = None
    organisation: str | None = None
    authority: str = "persons"
    role: str = ""

    def email(self, domain: str) -> str:
        return f"{self.local_part}@{self.subdomain}.{domain}" if self.subdomain else f"{self.local_part}@{domain}"


DEMO_IDENTITIES = (
    DemoIdentity("anne.martin", "Dr Anne Martin", national_id=rpps_national_id("1000123456"), role="physician"),
    DemoIdentity("camille.durand", "Camille Durand", subdomain="patient", role="patient"),
    DemoIdentity(
        "secretariat.cardiologie",
        "Secretariat de cardiologie",
        organisation="Clinique de demonstration",
        authority="organisations",
        role="organisation mailbox",
    ),
)


async def create_demo(settings: Settings) -> list[str]:
    """Issue the demo certificates that do not exist yet; return printable lines (never key material)."""
    db = Database(settings.sqlalchemy_url)
    try:
        settings = await authority.settings_for_hierarchy(db, settings)
        lines = [f"Demo identities of {settings.domain}:"]
        for identity in DEMO_IDENTITIES:
            address = identity.email(settings.domain)
            current = [
                r for r in await authority.find_by_email(db, address) if r.status() == "valid" and r.key_held
            ]
            if current:
                record, state = current[0], "existing"
            else:
                credential = await authority.issue(
                    db,
                    settings,
                    authority.IssueRequest(
                        profile="smime",
                        common_name=identity.common_name,
                        emails=[address],
                        national_id=identity.national_id,
                        organisation=identity.organisation,
                        authority=identity.authority,
                    ),
                )
                record, state = await authority.get_certificate(db, credential.serial), "issued"
            national = f", national id {record.national_id}" if record.national_id else ""
            lines.append(
                f"  {address:<40} {identity.role}{national}: certificate {record.serial} ({state}, CA "
                f"{record.authority}, until {record.not_after:%Y-%m-%d})"
            )
    finally:
        await db.close()
    bundle = authority.ca_bundle_path(settings)
    lines.append(f"Trust {bundle} in your mail client to verify these identities' signatures.")
    lines.append(
        "Export one for Thunderbird or mutt: "
        f"carnet pki export-p12 --data {settings.data_dir} --email ADDRESS -o ADDRESS.p12 --password-stdin"
    )
    return lines
