"""carnet's directory: identities, mailboxes, the certificate directory and the trust space.

Implemented here:

- identities with their national identifiers and check digits (:mod:`~carnet.directory.identifiers`):
  professionals (RPPS with Luhn, ADELI; IDNPS ``8``/``0`` + number, OID 1.2.250.1.71.4.2.1), organisations (FINESS
  with Luhn, SIRET with Luhn and La Poste's rule; IDNST ``1``/``3`` + number, OID 1.2.250.1.71.4.2.2), patients
  (INS référentiel v2: NIR/NIA matricule with its mod-97 key, Corsica 2A/2B, OIDs 1.2.250.1.213.1.4.8/.9, test and
  demo OIDs .10/.11 in test mode only; identity traits and status — only VALI is used in messages), apps; legal
  representatives acting for a patient;
- mailboxes PER, ORG, CAB, APP and the patient's, with deterministic addresses (:mod:`~carnet.directory.addresses`),
  the red list, and an S/MIME certificate issued by :mod:`carnet.pki` that follows the mailbox's life
  (:mod:`~carnet.directory.mailboxes`);
- the one authentication service (argon2id per RFC 9106, app passwords, throttling in the database), "who may send
  as" and routing lookups (:mod:`~carnet.directory.auth`);
- the certificate directory over HTTP with content negotiation and RFC 9457 problems, the directory search, and a
  read-only FHIR R4 view shaped like ANS's Annuaire Santé (:mod:`~carnet.directory.http`,
  :mod:`~carnet.directory.fhir`);
- recipients' certificates, local or fetched over HTTPS from trusted operators and cached
  (:mod:`~carnet.directory.certificates`, :mod:`~carnet.directory.remote`);
- the trust space: operators, the MSSanté-style "liste blanche" and .p7b trust bundle, published and imported; the
  trust anchors for the gateway (:mod:`~carnet.directory.trustspace`);
- bulk CSV import (:mod:`~carnet.directory.importer`) and the ``carnet directory`` / ``carnet trust`` commands.

Not implemented: synchronisation with the national RPPS/FINESS extracts and the INSi téléservice (identities and
their status are given by the operator), LDAP access to the directory, mutual-TLS client authentication of peers
reading our directory (the certificate directory is public, as the national one is), the national whitelist's
signature, certificate revocation checks of remote certificates (left to the S/MIME validator), and the ADELI key
algorithm (only the 9-digit shape is checked).

The names below are re-exported lazily, so importing ``carnet.directory`` (as ``carnet.models`` does) costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from carnet.directory.auth import (
        BadCredentials,
        Disabled,
        Principal,
        Throttled,
        authenticate,
        create_app_password,
        list_app_passwords,
        may_send_as,
        revoke_app_password,
        send_as_addresses,
        set_password,
    )
    from carnet.directory.certificates import CertificateLookup, LookupStatus, certificates_for
    from carnet.directory.http import directory_router
    from carnet.directory.importer import ImportResult, import_csv
    from carnet.directory.mailboxes import (
        add_app,
        add_organisation,
        add_patient,
        add_professional,
        add_representative,
        add_service,
        disable_mailbox,
        grant_send_as,
        lookup_mailbox,
        renew_certificate,
        set_red_list,
    )
    from carnet.directory.records import (
        AppInput,
        DirectoryError,
        Duplicate,
        IdentityNotQualified,
        InvalidInput,
        MailboxInfo,
        MailboxKind,
        NotFound,
        OrganisationInput,
        PatientInput,
        ProfessionalInput,
        SearchQuery,
    )
    from carnet.directory.search import search
    from carnet.directory.trustspace import trust_anchors

_EXPORTS = {
    **dict.fromkeys(
        (
            "BadCredentials",
            "Disabled",
            "Principal",
            "Throttled",
            "authenticate",
            "create_app_password",
            "list_app_passwords",
            "may_send_as",
            "revoke_app_password",
            "send_as_addresses",
            "set_password",
        ),
        "carnet.directory.auth",
    ),
    **dict.fromkeys(("CertificateLookup", "LookupStatus", "certificates_for"), "carnet.directory.certificates"),
    "directory_router": "carnet.directory.http",
    **dict.fromkeys(("ImportResult", "import_csv"), "carnet.directory.importer"),
    **dict.fromkeys(
        (
            "add_app",
            "add_organisation",
            "add_patient",
            "add_professional",
            "add_representative",
            "add_service",
            "disable_mailbox",
            "grant_send_as",
            "lookup_mailbox",
            "renew_certificate",
            "set_red_list",
        ),
        "carnet.directory.mailboxes",
    ),
    **dict.fromkeys(
        (
            "AppInput",
            "DirectoryError",
            "Duplicate",
            "IdentityNotQualified",
            "InvalidInput",
            "MailboxInfo",
            "MailboxKind",
            "NotFound",
            "OrganisationInput",
            "PatientInput",
            "ProfessionalInput",
            "SearchQuery",
        ),
        "carnet.directory.records",
    ),
    "search": "carnet.directory.search",
    "trust_anchors": "carnet.directory.trustspace",
}

__all__ = [
    "AppInput",
    "BadCredentials",
    "CertificateLookup",
    "DirectoryError",
    "Disabled",
    "Duplicate",
    "IdentityNotQualified",
    "ImportResult",
    "InvalidInput",
    "LookupStatus",
    "MailboxInfo",
    "MailboxKind",
    "NotFound",
    "OrganisationInput",
    "PatientInput",
    "Principal",
    "ProfessionalInput",
    "SearchQuery",
    "Throttled",
    "add_app",
    "add_organisation",
    "add_patient",
    "add_professional",
    "add_representative",
    "add_service",
    "authenticate",
    "certificates_for",
    "create_app_password",
    "directory_router",
    "disable_mailbox",
    "grant_send_as",
    "import_csv",
    "list_app_passwords",
    "lookup_mailbox",
    "may_send_as",
    "renew_certificate",
    "revoke_app_password",
    "search",
    "send_as_addresses",
    "set_password",
    "set_red_list",
    "trust_anchors",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'carnet.directory' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
