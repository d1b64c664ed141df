"""The certificate directory, search and FHIR view over real HTTP (httpx → uvicorn on a loopback port)."""

import httpx
import pytest
from cryptography import x509
from dirhelp import finess, organisation, patient, professional, rpps, serving
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole

from carnet.config import Settings
from carnet.db import Database
from carnet.directory import mailboxes, store
from carnet.directory.http import negotiate


async def populate(db: Database, settings: Settings) -> dict[str, str]:
    await mailboxes.add_organisation(db, settings, organisation(1, "Hôpital Nord", "Saint-Étienne"),
                                     services=["Cardiologie"])
    await mailboxes.add_organisation(db, settings, organisation(2, "Clinique du Lac", "Annecy"))
    anne = await mailboxes.add_professional(db, settings, professional(1, "Anne", "Martin",
                                                                       organisations=["1" + finess(1)]))
    await mailboxes.add_professional(db, settings, professional(2, "Hélène", "Dubois", profession="60", specialty=None,
                                                                organisations=["1" + finess(2)]))
    hidden = await mailboxes.add_professional(db, settings, professional(3, "Anne", "Cachée"))
    await mailboxes.set_red_list(db, hidden.address, True)
    gone = await mailboxes.add_professional(db, settings, professional(4, "Annie", "Partie"))
    await mailboxes.disable_mailbox(db, settings, gone.address)
    pat = await mailboxes.add_patient(db, settings, patient(1, birth_name="Annecy"))
    return {"anne": anne.address, "hidden": hidden.address, "gone": gone.address, "patient": pat.address}


async def test_certificate_lookup_content_negotiation(ca: Database, settings: Settings) -> None:
    people = await populate(ca, settings)
    with serving(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            url = f"/directory/certificates/{people['anne']}"
            answer = await client.get(url)
            assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
            body = answer.json()
            leaf = x509.load_pem_x509_certificate(body["certificates"][0]["pem"].encode())
            assert body["address"] == people["anne"] and len(body["chain"]) == 1
            assert leaf.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == "8" + rpps(1)

            pem = await client.get(url, headers={"Accept": "application/pem-certificate-chain"})
            assert pem.headers["content-type"].startswith("application/pem-certificate-chain")
            assert x509.load_pem_x509_certificates(pem.content)[0].serial_number == leaf.serial_number
            assert len(x509.load_pem_x509_certificates(pem.content)) == 2
            x_pem = await client.get(url, headers={"Accept": "text/html;q=0.9, application/x-pem-file"})
            assert x_pem.headers["content-type"].startswith("application/x-pem-file")
            der = await client.get(url.upper().replace("/DIRECTORY/CERTIFICATES/", "/directory/certificates/"),
                                   headers={"Accept": "application/pkix-cert"})
            assert der.headers["content-type"] == "application/pkix-cert"
            assert x509.load_der_x509_certificate(der.content) == leaf

            # Red-listed mailboxes still answer (delivery needs them); patients too.
            assert (await client.get(f"/directory/certificates/{people['hidden']}")).status_code == 200
            assert (await client.get(f"/directory/certificates/{people['patient']}")).status_code == 200
            # Disabled: its certificate is revoked, so nothing valid to return.
            gone = await client.get(f"/directory/certificates/{people['gone']}")
            assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"
            assert gone.json()["type"] == "urn:carnet:problem:no-certificate" and gone.json()["status"] == 404
            unknown = await client.get("/directory/certificates/nobody@carnet.test")
            assert unknown.json()["type"] == "urn:carnet:problem:unknown-address"
            foreign = await client.get("/directory/certificates/someone@elsewhere.example")
            assert foreign.status_code == 404
            refused = await client.get(url, headers={"Accept": "image/png"})
            assert refused.status_code == 406 and refused.json()["type"] == "urn:carnet:problem:not-acceptable"


def test_negotiate() -> None:
    assert negotiate(None) == "application/json"
    assert negotiate("*/*") == "application/json"
    assert negotiate("application/pkix-cert;q=0.5, application/pem-certificate-chain") == (
        "application/pem-certificate-chain")
    assert negotiate("application/pkix-cert, application/json;q=0") == "application/pkix-cert"
    assert negotiate("text/plain") is None


async def test_search_over_http(ca: Database, settings: Settings) -> None:
    people = await populate(ca, settings)
    with serving(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:

            async def found(**params: str) -> list[str]:
                answer = await client.get("/directory/search", params=params)
                assert answer.status_code == 200, answer.text
                return [hit["address"] for hit in answer.json()["results"]]

            assert await found(name="anne") == [people["anne"]]  # not the red-listed, disabled or patient ones
            assert await found(name="HELENE") == ["helene.dubois@carnet.test"]
            assert await found(profession="60") == ["helene.dubois@carnet.test"]
            assert await found(specialty="sm26", city="saint-etienne") == [people["anne"]]
            assert sorted(await found(city="Saint Étienne")) == sorted(["cardiologie@carnet.test", people["anne"]])
            assert await found(organisation="lac") == ["helene.dubois@carnet.test"]
            assert await found(rpps=rpps(1)) == [people["anne"]]
            assert sorted(await found(finess=finess(1))) == sorted(["cardiologie@carnet.test", people["anne"]])
            assert await found(q="cardiologie nord") == ["cardiologie@carnet.test"]
            assert await found(q="annecy") == ["helene.dubois@carnet.test"]  # the clinic, never the patient
            assert await found(name="cachee") == []

            page = (await client.get("/directory/search", params={"q": "saint", "per_page": "1", "page": "2"})).json()
            assert page["total"] == 2 and len(page["results"]) == 1 and page["page"] == 2


INJECTIONS = ["%", "_", "%%", "'", '"', "' OR 1=1 --", "anne' OR '1'='1", "\\", "a%b_c", "'; DROP TABLE x; --"]


async def test_search_rejects_or_neutralises_hostile_queries(ca: Database, settings: Settings) -> None:
    await populate(ca, settings)
    async with ca.session() as session:
        before = await store.count_rows(session)
    with serving(settings) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            for hostile in INJECTIONS:
                for param in ("q", "name", "city", "organisation"):
                    answer = await client.get("/directory/search", params={param: hostile})
                    assert answer.status_code in (200, 400), (param, hostile, answer.text)
                    if answer.status_code == 200:
                        assert answer.json()["results"] == [], (param, hostile)
                    else:
                        assert answer.headers["content-type"] == "application/problem+json"
                for param in ("rpps", "finess", "profession"):
                    answer = await client.get("/directory/search", params={param: hostile})
                    assert answer.status_code == 400 and answer.json()["type"] == "urn:carnet:problem:bad-query"

            too_long = await client.get("/directory/search", params={"q": "a" * 2000})
            assert too_long.status_code == 414
            assert (await client.get("/directory/search", params={"q": "x" * 101})).status_code == 400
            assert (await client.get("/directory/search", params={"q": "a b c d e f g h"})).status_code == 400
            assert (await client.get("/directory/search", params={"q": "a"})).json()["detail"].startswith("q: each")
            assert (await client.get("/directory/search")).json()["detail"].startswith("give at least one")
            assert (await client.get("/directory/search", params={"bogus": "1"})).status_code == 400
            assert (await client.get("/directory/search", params={"q": "an", "per_page": "500"})).status_code == 400
            assert (await client.get("/directory/search", params={"q": "an", "page": "x"})).status_code == 400
            assert (await client.get("/directory/search", params={"kind": "PAT", "q": "an"})).status_code == 400
            assert (await client.get("/directory/search", params=[("q", "an"), ("q", "ne")])).status_code == 400
    async with ca.session() as session:
        assert await store.count_rows(session) == before


async def test_fhir_view_validates_against_r4b(ca: Database, settings: Settings) -> None:
    """FHIR output checked with fhir.resources' R4B models (R4B shares these resources' R4 definitions)."""
    people = await populate(ca, settings)
    idnps, idnst = "8" + rpps(1), "1" + finess(1)
    with serving(settings) as server:
        async with httpx.AsyncClient(base_url=f"{server.url}/directory/fhir") as client:
            read = await client.get(f"/Practitioner/{idnps}")
            assert read.status_code == 200 and read.headers["content-type"] == "application/fhir+json"
            practitioner = Practitioner.model_validate(read.json())
            assert practitioner.identifier[0].system == "urn:oid:1.2.250.1.71.4.2.1"
            assert practitioner.identifier[0].value == idnps
            assert [(t.system, t.value) for t in practitioner.telecom] == [("email", people["anne"])]

            hidden = Practitioner.model_validate((await client.get(f"/Practitioner/8{rpps(3)}")).json())
            assert hidden.telecom is None  # the red-listed mailbox is not exported

            organization = Organization.model_validate((await client.get(f"/Organization/{idnst}")).json())
            assert organization.identifier[0].system == "urn:oid:1.2.250.1.71.4.2.2"
            assert organization.address[0].city == "Saint-Étienne"
            assert [t.value for t in organization.telecom] == ["cardiologie@carnet.test"]

            role = PractitionerRole.model_validate((await client.get(f"/PractitionerRole/{idnps}-{idnst}")).json())
            assert role.practitioner.reference == f"Practitioner/{idnps}"
            assert role.organization.reference == f"Organization/{idnst}"
            assert role.code[0].coding[0].code == "10" and role.specialty[0].coding[0].code == "SM26"

            bundle = Bundle.model_validate((await client.get("/Practitioner", params={"name": "anne"})).json())
            assert bundle.type == "searchset" and bundle.total == 2
            assert {e.resource.id for e in bundle.entry} == {idnps, "8" + rpps(3)}
            by_identifier = await client.get("/Practitioner",
                                             params={"identifier": f"urn:oid:1.2.250.1.71.4.2.1|{idnps}"})
            assert [e["resource"]["id"] for e in by_identifier.json()["entry"]] == [idnps]
            by_rpps = await client.get("/Practitioner", params={"identifier": rpps(2)})
            assert by_rpps.json()["total"] == 1
            paged = Bundle.model_validate((await client.get("/Practitioner", params={"_count": "1"})).json())
            assert paged.total == 4 and len(paged.entry) == 1
            assert [link.relation for link in paged.link] == ["self", "next"]

            orgs = Bundle.model_validate((await client.get("/Organization", params={"address-city": "annecy"})).json())
            assert [e.resource.name for e in orgs.entry] == ["Clinique du Lac"]
            roles = Bundle.model_validate((await client.get("/PractitionerRole",
                                                            params={"organization": f"Organization/{idnst}"})).json())
            assert [e.resource.id for e in roles.entry] == [f"{idnps}-{idnst}"]
            nurses = Bundle.model_validate((await client.get("/PractitionerRole", params={"role": "60"})).json())
            assert nurses.total == 1

            missing = await client.get("/Practitioner/899999999999")
            assert missing.status_code == 404
            assert OperationOutcome.model_validate(missing.json()).issue[0].code == "not-found"
            unsupported = await client.get("/Practitioner", params={"birthdate": "1980"})
            assert unsupported.status_code == 400
            assert OperationOutcome.model_validate(unsupported.json()).issue[0].code == "not-supported"
            assert (await client.get("/Patient")).status_code == 404
            assert (await client.get("/metadata")).json()["fhirVersion"] == "4.0.1"


async def test_trust_publication_over_http(ca: Database, settings: Settings) -> None:
    from carnet.directory.trustspace import load_certificates, parse_whitelist

    with serving(settings, tls=True) as server:
        async with httpx.AsyncClient(base_url=server.url, verify=server.client_context()) as client:
            sni = {"sni_hostname": settings.domain}  # the TLS certificate names the domain, not 127.0.0.1
            xml = await client.get("/trust/liste-blanche.xml", extensions=sni)
            bundle = await client.get("/trust/bundle.p7b", extensions=sni)
    assert xml.headers["content-type"].startswith("application/xml")
    parsed = parse_whitelist(xml.content)
    assert parsed.publisher == "carnet.test"
    assert [e.domain for e in parsed.entries] == ["carnet.test", "patient.carnet.test"]
    assert parsed.entries[0].directory_url == f"{server.url}/directory"
    assert bundle.headers["content-type"].startswith("application/pkcs7-mime")
    assert len(load_certificates(bundle.content)) == 4


@pytest.mark.parametrize("value", ["", "a@b", "<>"])
def test_negotiation_does_not_crash_on_odd_headers(value: str) -> None:
    assert negotiate(value) in (None, "application/json")
