"""Bulk import of identities and their mailboxes from CSV (``carnet directory import FILE.csv``).

File: UTF-8 (a BOM is accepted), ``,`` or ``;`` separated (taken from the header line), one header row. Columns
(unknown ones are refused; empty cells are absent values):

- ``type``: ``professional``, ``organisation`` or ``patient`` (required);
- professionals: ``id_type`` (RPPS/ADELI), ``id``, ``first_name``, ``last_name``, ``profession``, ``specialty``,
  ``organisations`` (IDNST, ``|``-separated; organisations of the same file may be named);
- organisations: ``id_type`` (FINESS/SIRET), ``id``, ``name``, ``street``, ``postal_code``, ``city``, ``services``
  (``|``-separated, one ORG mailbox each), ``practice`` (yes: a CAB mailbox);
- patients: ``ins``, ``ins_oid`` (default NIR), ``birth_name``, ``first_names``, ``birth_date`` (YYYY-MM-DD),
  ``sex``, ``birthplace``, ``status`` (must be VALI to get a mailbox);
- ``red_list``: yes/no.

What is atomic (the rule the CLI prints):

1. Every row is checked first (identifiers, traits, duplicates within the file, organisations referenced, identity
   status) before anything is written. By default a file with any rejected row imports **nothing** and the report
   lists every rejected row with its line and reason; ``skip_invalid=True`` (``--skip-invalid``) imports the valid
   rows and reports the others.
2. Rows whose identity (IDNPS, IDNST, INS) is already in the directory are skipped and counted as "already present",
   so an interrupted import can simply be run again.
3. Each row is all-or-nothing: its certificate is issued, then its identity and mailbox are written in one
   transaction (rows are written in batches of :data:`BATCH`; a batch that fails is retried row by row). A row that
   still fails has its certificate revoked and is reported; there is never a mailbox without its certificate.

Speed: certificates are issued :data:`DEFAULT_CONCURRENCY` at a time; key generation runs in worker threads
(OpenSSL releases the GIL), so RSA key generation uses every core. ``key_type="p256"`` makes keys ~1000× cheaper
than RSA-2048 (see ``bench/directory_import_bench.py``).
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import store
from carnet.directory.addresses import AddressError, first_free
from carnet.directory.checks import (
    CheckedOrganisation,
    CheckedPatient,
    CheckedProfessional,
    check_organisation,
    check_patient,
    check_professional,
    check_service,
    display_key,
)
from carnet.directory.identifiers import InvalidIdentifier
from carnet.directory.mailboxes import (
    CertificateSpec,
    discard_certificate,
    issue_certificate,
    mailbox_row,
    patient_address,
    require_qualified,
    write_organisation,
    write_patient,
    write_professional,
)
from carnet.directory.models import Mailbox
from carnet.directory.records import (
    DirectoryError,
    MailboxKind,
    OrganisationInput,
    PatientInput,
    ProfessionalInput,
)

log = logging.getLogger(__name__)

COLUMNS = (
    "type",
    "id_type",
    "id",
    "first_name",
    "last_name",
    "profession",
    "specialty",
    "organisations",
    "name",
    "street",
    "postal_code",
    "city",
    "services",
    "practice",
    "ins",
    "ins_oid",
    "birth_name",
    "first_names",
    "birth_date",
    "sex",
    "birthplace",
    "status",
    "red_list",
)
MAX_ROWS = 1_000_000
MAX_FIELD = 1000
BATCH = 100
DEFAULT_CONCURRENCY = 4
_ISSUE_ATTEMPTS = 5
_YES = {"yes", "y", "true", "1", "oui", "o"}
_NO = {"", "no", "n", "false", "0", "non"}


class ImportFileError(DirectoryError, ValueError):
    """The file as a whole cannot be imported (not CSV, unknown columns, too many rows)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    line: int
    reason: str


@dataclass(slots=True)
class ImportResult:
    rows: int = 0
    imported: int = 0
    already_present: int = 0
    mailboxes: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    #: False when nothing was written because of rejected rows (strict mode).
    committed: bool = True
    seconds: float = 0.0

    @property
    def rows_per_second(self) -> float:
        return self.imported / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class _Job:
    """One mailbox to create: a professional, a patient, or an organisation's service/practice."""

    line: int
    kind: MailboxKind
    spec: CertificateSpec
    address: str = ""
    serial: str = ""
    professional: CheckedProfessional | None = None
    patient: CheckedPatient | None = None
    organisation: str | None = None  # IDNST, for services
    service: str | None = None
    red_list: bool = False
    identity: str = ""  # IDNPS/INS/IDNST+service, for reporting


def _flag(value: str, line: int, column: str) -> bool:
    folded = value.strip().lower()
    if folded in _YES:
        return True
    if folded in _NO:
        return False
    raise ImportFileError(f"line {line}: {column} {value!r} must be yes or no")


def read_rows(data: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV document; raises ImportFileError for file-level problems."""
    first_line = data.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    reader = csv.DictReader(io.StringIO(data, newline=""), delimiter=delimiter, strict=True)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "type" not in header:
        raise ImportFileError("the header row must have a 'type' column")
    unknown = [h for h in header if h not in COLUMNS]
    if unknown:
        raise ImportFileError(f"unknown column {unknown[0]!r} (known: {', '.join(COLUMNS)})")
    reader.fieldnames = header
    rows = []
    try:
        for row in reader:
            if len(rows) >= MAX_ROWS:
                raise ImportFileError(f"the file has more than {MAX_ROWS} rows: split it")
            if None in row:
                raise ImportFileError(f"line {reader.line_num}: more cells than columns")
            if any(v is not None and len(v) > MAX_FIELD for v in row.values()):
                raise ImportFileError(f"line {reader.line_num}: a cell is longer than {MAX_FIELD} characters")
            if not any((v or "").strip() for v in row.values()):
                continue
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()}))
    except csv.Error as exc:
        raise ImportFileError(f"line {reader.line_num}: not valid CSV ({exc})") from None
    return rows


def _decode(source: Path | str) -> str:
    if isinstance(source, str):
        return source.removeprefix("\ufeff")
    try:
        return source.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(f"{source} is not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split("|") if part.strip()]


async def import_csv(
    db: Database,
    settings: Settings,
    source: Path | str,
    *,
    skip_invalid: bool = False,
    key_type: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
) -> ImportResult:
    """Import a CSV file (a path) or document (a str); ``progress(done, total)`` is called as mailboxes are made."""
    started = time.perf_counter()
    data = await asyncio.to_thread(_decode, source)
    rows = read_rows(data)
    result = ImportResult(rows=len(rows))

    organisations: list[tuple[int, CheckedOrganisation, list[str], bool, bool]] = []
    professionals: list[tuple[int, CheckedProfessional, bool]] = []
    patients: list[tuple[int, CheckedPatient, bool]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        try:
            kind = row.get("type", "").lower()
            red_list = _flag(row.get("red_list", ""), line, "red_list")
            if kind in ("organisation", "organization"):
                org = check_organisation(
                    OrganisationInput(
                        row.get("id_type", ""),
                        row.get("id", ""),
                        row.get("name", ""),
                        row.get("street"),
                        row.get("postal_code"),
                        row.get("city"),
                    )
                )
                services = [check_service(s)[0] for s in _split(row.get("services", ""))]
                key = org.id.national_id
                item: object = (line, org, services, _flag(row.get("practice", ""), line, "practice"), red_list)
            elif kind == "professional":
                pro = check_professional(
                    ProfessionalInput(
                        row.get("id_type", ""),
                        row.get("id", ""),
                        row.get("first_name", ""),
                        row.get("last_name", ""),
                        row.get("profession", ""),
                        row.get("specialty") or None,
                        _split(row.get("organisations", "")),
                    )
                )
                key, item = pro.id.national_id, (line, pro, red_list)
            elif kind == "patient":
                pat = check_patient(
                    PatientInput(
                        ins=row.get("ins", ""),
                        birth_name=row.get("birth_name", ""),
                        first_names=row.get("first_names", ""),
                        birth_date=row.get("birth_date", ""),  # type: ignore[arg-type]
                        sex=row.get("sex", ""),
                        birthplace_code=row.get("birthplace", ""),
                        ins_oid=row.get("ins_oid") or "1.2.250.1.213.1.4.8",
                        identity_status=row.get("status", ""),
                    ),
                    test_mode=settings.test_mode,
                )
                require_qualified(pat)
                key, item = pat.ins.matricule, (line, pat, red_list)
            else:
                raise ImportFileError(f"type {row.get('type')!r} must be professional, organisation or patient")
            if key in seen:
                raise ImportFileError(f"{key} already appears on line {seen[key]}")
            seen[key] = line
        except (ValueError, InvalidIdentifier, DirectoryError) as exc:
            result.rejected.append(Rejected(line, str(exc)))
            continue
        if kind == "patient":
            patients.append(item)  # type: ignore[arg-type]
        elif kind == "professional":
            professionals.append(item)  # type: ignore[arg-type]
        else:
            organisations.append(item)  # type: ignore[arg-type]

    async with db.session() as session:
        existing = await store.existing_national_ids(
            session,
            [p.id.national_id for _l, p, _r in professionals],
            [p.ins.matricule for _l, p, _r in patients],
            [o.id.national_id for _l, o, _s, _p, _r in organisations],
        )
        file_orgs = {o.id.national_id for _l, o, _s, _p, _r in organisations}
        referenced = {o for _l, p, _r in professionals for o in p.organisations} - file_orgs
        known_orgs = set(await store.organisations_by_national_ids(session, referenced))
        taken = await store.all_local_parts(session, settings.domain)

    def fresh(key: str) -> bool:
        if key in existing:
            result.already_present += 1
            return False
        return True

    organisations = [o for o in organisations if fresh(o[1].id.national_id)]
    patients = [p for p in patients if fresh(p[1].ins.matricule)]
    kept = []
    for line, pro, red_list in professionals:
        if not fresh(pro.id.national_id):
            continue
        missing = [o for o in pro.organisations if o not in file_orgs and o not in known_orgs]
        if missing:
            result.rejected.append(Rejected(line, f"organisation {', '.join(missing)} is not in the directory"))
            continue
        kept.append((line, pro, red_list))
    professionals = kept
    result.rejected.sort(key=lambda r: r.line)
    if result.rejected and not skip_invalid:
        result.committed = False
        result.seconds = time.perf_counter() - started
        return result

    jobs: list[_Job] = []
    org_names: dict[str, str] = {}
    if organisations:
        async with db.transaction() as session:
            for _line, org, _services, _practice, _red in organisations:
                await write_organisation(session, org)
                org_names[org.id.national_id] = org.name
        result.imported += len(organisations)
    for line, org, services, practice, red_list in organisations:
        idnst = org.id.national_id
        if practice:
            jobs.append(
                _Job(
                    line,
                    MailboxKind.CAB,
                    CertificateSpec(MailboxKind.CAB, org.name, idnst, org.name, key_type),
                    organisation=idnst,
                    red_list=red_list,
                    identity=f"{idnst} practice",
                )
            )
        for service in services:
            display = f"{service} - {org.name}"
            jobs.append(
                _Job(
                    line,
                    MailboxKind.ORG,
                    CertificateSpec(MailboxKind.ORG, display, idnst, org.name, key_type),
                    organisation=idnst,
                    service=service,
                    red_list=red_list,
                    identity=f"{idnst} {service}",
                )
            )
    for line, pro, red_list in professionals:
        jobs.append(
            _Job(
                line,
                MailboxKind.PER,
                CertificateSpec(MailboxKind.PER, pro.display_name, pro.id.national_id, None, key_type),
                professional=pro,
                red_list=red_list,
                identity=pro.id.national_id,
            )
        )
    for line, pat, red_list in patients:
        jobs.append(
            _Job(
                line,
                MailboxKind.PAT,
                CertificateSpec(MailboxKind.PAT, pat.display_name, None, None, key_type),
                patient=pat,
                red_list=red_list,
                identity=pat.ins.matricule,
                address=patient_address(pat, settings),
            )
        )
    jobs.sort(key=lambda j: j.line)
    for job in jobs:
        if job.address:
            continue
        if job.professional is not None:
            base = job.professional.address_base
        else:
            base = check_service(job.service or org_names.get(job.organisation or "", ""))[1]
        try:
            local = first_free(base, taken.__contains__)
        except AddressError as exc:
            result.rejected.append(Rejected(job.line, str(exc)))
            continue
        taken.add(local)
        job.address = f"{local}@{settings.domain}"
    jobs = [j for j in jobs if j.address]

    semaphore = asyncio.Semaphore(max(1, concurrency))
    done = 0
    for start in range(0, len(jobs), BATCH):
        batch = jobs[start : start + BATCH]
        try:
            await asyncio.gather(*(_issue(db, settings, job, semaphore, result) for job in batch))
            issued = [job for job in batch if job.serial]
            await _write_batch(db, settings, issued, result)
        except BaseException:
            # Interrupted or failed unexpectedly: revoke what this batch issued but did not write, then stop.
            async with db.session() as session:
                written = {
                    m.certificate_serial
                    for m in await store.mailboxes_with_serials(session, [j.serial for j in batch if j.serial])
                }
            for job in batch:
                if job.serial and job.serial not in written:
                    await discard_certificate(db, settings, job.serial)
            raise
        done += len(batch)
        if progress is not None:
            progress(done, len(jobs))
    result.rejected.sort(key=lambda r: r.line)
    result.seconds = time.perf_counter() - started
    return result


async def _issue(
    db: Database, settings: Settings, job: _Job, semaphore: asyncio.Semaphore, result: ImportResult
) -> None:
    async with semaphore:
        for attempt in range(_ISSUE_ATTEMPTS):
            try:
                job.serial = await issue_certificate(db, settings, job.spec, job.address)
                return
            except OperationalError:  # SQLite "database is locked" under concurrent writers: nothing was written
                await asyncio.sleep(0.05 * (attempt + 1))
            except ValueError as exc:
                result.rejected.append(Rejected(job.line, f"certificate not issued: {exc}"))
                return
        result.rejected.append(Rejected(job.line, "certificate not issued: the database stayed busy"))


async def _write_job(session: AsyncSession, job: _Job, org_ids: dict[str, int]) -> Mailbox:
    if job.professional is not None:
        return await write_professional(session, job.professional, job.address, job.serial, red_list=job.red_list)
    if job.patient is not None:
        return await write_patient(session, job.patient, job.address, job.serial, red_list=job.red_list)
    org_id = org_ids[job.organisation or ""]
    org = await store.organisation_by_id(session, org_id)
    assert org is not None
    if job.kind is MailboxKind.CAB:
        mailbox = mailbox_row(
            MailboxKind.CAB,
            job.address,
            org.name,
            display_key(org.name, org.city),
            job.serial,
            red_list=job.red_list,
            organisation_id=org_id,
        )
    else:
        mailbox = mailbox_row(
            MailboxKind.ORG,
            job.address,
            f"{job.service} - {org.name}",
            display_key(job.service, org.name, org.city),
            job.serial,
            red_list=job.red_list,
            service=job.service,
            organisation_id=org_id,
        )
    await store.add(session, mailbox)
    return mailbox


async def _write_batch(db: Database, settings: Settings, jobs: list[_Job], result: ImportResult) -> None:
    if not jobs:
        return
    async with db.session() as session:
        org_ids = {
            k: v.id
            for k, v in (
                await store.organisations_by_national_ids(session, {j.organisation for j in jobs if j.organisation})
            ).items()
        }
    try:
        async with db.transaction() as session:
            for job in jobs:
                await _write_job(session, job, org_ids)
    except Exception:
        for job in jobs:
            try:
                async with db.transaction() as session:
                    await _write_job(session, job, org_ids)
            except Exception as exc:
                await discard_certificate(db, settings, job.serial)
                result.rejected.append(
                    Rejected(
                        job.line,
                        f"{job.identity}: not written ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                    )
                )
            else:
                _count(job, result)
        return
    for job in jobs:
        _count(job, result)


def _count(job: _Job, result: ImportResult) -> None:
    result.mailboxes += 1
    if job.kind in (MailboxKind.PER, MailboxKind.PAT):
        result.imported += 1
