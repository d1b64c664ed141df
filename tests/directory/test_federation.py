"""Two carnet instances on loopback, each with its own CA, database and HTTPS directory, federate; a third is refused.

Instance A runs on the parametrised backend's test database, B on another database of the same backend, C (never
in the trust space) on SQLite. Each serves its directory over HTTPS with the TLS server certificate its own CA
issued for its domain; the directory URLs are ``https://127.0.0.1:PORT/directory``, checked against the operator's
domain name.
"""

from pathlib import Path

import httpx
from cryptography import x509
from dirhelp import Server, patient, professional, rpps
from instances import extra_database, instance_settings

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import mailboxes, store, trustspace
from carnet.directory.certificates import LookupStatus, certificates_for
from carnet.directory.remote import remote_certificates
from carnet.pki import authority


async def publication(server: Server, domain: str) -> tuple[bytes, bytes]:
    """Fetch an instance's whitelist and trust bundle over HTTPS (the out-of-band exchange, with its CA pinned)."""
    async with httpx.AsyncClient(base_url=server.url, verify=server.client_context()) as client:
        sni = {"sni_hostname": domain}
        xml = await client.get("/trust/liste-blanche.xml", extensions=sni)
        bundle = await client.get("/trust/bundle.p7b", extensions=sni)
    assert xml.status_code == bundle.status_code == 200
    return xml.content, bundle.content


async def test_two_instances_federate_and_a_stranger_is_refused(db_url: str, tmp_path: Path) -> None:
    a = instance_settings(tmp_path, "a.test", db_url)
    db_a = Database(a.sqlalchemy_url)
    async with extra_database(db_url, tmp_path, "b") as b_url, extra_database(
        f"sqlite:///{tmp_path}/c.db", tmp_path, "c"
    ) as c_url:
        b, c = instance_settings(tmp_path, "b.test", b_url), instance_settings(tmp_path, "c.test", c_url)
        db_b, db_c = Database(b.sqlalchemy_url), Database(c.sqlalchemy_url)
        try:
            for db, s in ((db_a, a), (db_b, b), (db_c, c)):
                await authority.init_hierarchy(db, s)
            anne = await mailboxes.add_professional(db_a, a, professional(1, "Anne", "Martin"))
            bob = await mailboxes.add_professional(db_b, b, professional(2, "Bob", "Durand"))
            lea = await mailboxes.add_patient(db_b, b, patient(3))
            carl = await mailboxes.add_professional(db_c, c, professional(4, "Carl", "Stranger"))
            with Server(a, tls=True) as server_a, Server(b, tls=True) as server_b, Server(c, tls=True) as server_c:
                await exchange(db_a, a, server_a, db_b, b, server_b)
                await fetch_each_other(db_a, a, db_b, b, anne.address, bob.address, lea.address)
                await stranger_is_refused(db_a, a, db_c, c, b, server_c, carl.address, anne.address)
        finally:
            for db in (db_a, db_b, db_c):
                await db.close()


async def exchange(db_a: Database, a: Settings, server_a: Server, db_b: Database, b: Settings,
                   server_b: Server) -> None:
    xml_a, bundle_a = await publication(server_a, "a.test")
    xml_b, bundle_b = await publication(server_b, "b.test")
    report = await trustspace.import_peer(db_b, b, xml_a, bundle_a)
    assert report.publisher == "a.test" and report.imported == ["a.test", "patient.a.test"]
    report = await trustspace.import_peer(db_a, a, xml_b, bundle_b)
    assert report.imported == ["b.test", "patient.b.test"]
    [op_b, _patients_b] = await trustspace.list_operators(db_a)
    assert op_b.directory_url == f"{server_b.url}/directory" and len(op_b.ca_certificates) == 4
    # B's whitelist now lists A too, but A's trust of B does not make B's peers trusted by A (not transitive).
    xml_b_again, _ = await publication(server_b, "b.test")
    report = await trustspace.import_peer(db_a, a, xml_b_again, bundle_b)
    assert "a.test" not in report.imported and report.not_trusted == []


async def fetch_each_other(db_a: Database, a: Settings, db_b: Database, b: Settings, anne: str, bob: str,
                           lea: str) -> None:
    found = await certificates_for(db_a, a, bob)
    assert found.status is LookupStatus.FOUND and found.source == "remote", found.detail
    [cert] = found.certificates
    assert cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == "8" + rpps(2)
    assert "O=b.test" in found.chain[0].subject.rfc4514_string()
    again = await certificates_for(db_a, a, bob.upper())
    assert again.found and again.source == "cache" and again.certificates == found.certificates
    assert (await certificates_for(db_a, a, lea)).found  # patient.b.test is B's too
    assert (await certificates_for(db_b, b, anne)).found
    unknown = await certificates_for(db_a, a, "nobody@b.test")
    assert unknown.status is LookupStatus.UNKNOWN_ADDRESS and unknown.source == "remote"
    assert (await certificates_for(db_a, a, "nobody@b.test")).source == "cache"  # negative answers are cached
    anchors = await trustspace.trust_anchors(db_a, a)
    organisations = {str(c.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value) for c in anchors}
    assert organisations == {"a.test", "b.test"}

    # B disables Bob: a fresh fetch reports it (the cache is bypassed with refresh=True).
    await mailboxes.disable_mailbox(db_b, b, bob)
    refreshed = await remote_certificates(db_a, a, bob, refresh=True)
    assert refreshed.status is LookupStatus.NO_CERTIFICATE


async def stranger_is_refused(db_a: Database, a: Settings, db_c: Database, c: Settings, b: Settings,
                              server_c: Server, carl: str, anne: str) -> None:
    # C's domain is not in A's trust space: no request is even made.
    refused = await certificates_for(db_a, a, carl)
    assert refused.status is LookupStatus.UNTRUSTED_DOMAIN and not refused.certificates
    # C has not imported A either.
    assert (await certificates_for(db_c, c, anne)).status is LookupStatus.UNTRUSTED_DOMAIN
    # An entry claiming c.test with B's CAs but pointing at C's server: C's TLS certificate does not chain to the
    # CAs the trust space holds for that operator, so the connection is refused (never the system store).
    b_bundle = (b.data_dir / "pki" / "ca-bundle.pem").read_bytes()
    await trustspace.add_operator(db_a, a, domain="c.test", name="Impostor", ca_bundle=b_bundle,
                                  directory_url=f"{server_c.url}/directory")
    impostor = await certificates_for(db_a, a, carl)
    assert impostor.status is LookupStatus.UNREACHABLE and "CERTIFICATE_VERIFY_FAILED" in impostor.detail
    async with db_a.session() as session:
        assert await store.cached_remote(session, carl) is None  # failures are not cached
    await trustspace.remove_operator(db_a, "c.test")
    assert (await certificates_for(db_a, a, carl)).status is LookupStatus.UNTRUSTED_DOMAIN
