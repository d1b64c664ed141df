"""The authentication service on both backends: passwords, app passwords, throttling, send-as."""

from datetime import date, timedelta

import pytest
from dirhelp import finess, organisation, patient, professional, rpps

from carnet.config import Settings, async_url
from carnet.db import Database, utcnow
from carnet.directory import auth, mailboxes
from carnet.directory.auth import BadCredentials, Disabled, Throttled, authenticate, may_send_as
from carnet.directory.records import InvalidInput, MailboxKind, NotFound

PASSWORD = "correct horse battery staple"


async def test_login_by_address_and_by_ins(ca: Database, settings: Settings) -> None:
    pro = await mailboxes.add_professional(ca, settings, professional(1))
    await auth.set_password(ca, pro.address, PASSWORD)
    principal = await authenticate(ca, "  Anne.MARTIN@carnet.test ", PASSWORD, client_ip="192.0.2.1", protocol="imap")
    assert principal.address == pro.address and principal.kind is MailboxKind.PER
    assert principal.national_id == "8" + rpps(1) and principal.method == "password" and principal.protocol == "imap"

    pat = await mailboxes.add_patient(ca, settings, patient(5, department="2B"))
    await auth.set_password(ca, pat.address, PASSWORD)
    assert pat.ins is not None
    by_ins = await authenticate(ca, pat.ins.lower(), PASSWORD, client_ip="192.0.2.1", protocol="webmail")
    by_address = await authenticate(ca, pat.address, PASSWORD, client_ip="192.0.2.1", protocol="webmail")
    assert by_ins.address == by_address.address == pat.address and by_ins.ins == pat.ins


async def test_bad_credentials_look_the_same(ca: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    pro = await mailboxes.add_professional(ca, settings, professional(1))
    await auth.set_password(ca, pro.address, PASSWORD)
    no_password = await mailboxes.add_professional(ca, settings, professional(2, "Paul", "Petit"))
    verified: list[str] = []
    real_verify = auth._verify

    def counting_verify(hashed: str, password: str) -> bool:  # the real argon2id check, counted
        verified.append(hashed)
        return real_verify(hashed, password)

    monkeypatch.setattr(auth, "_verify", counting_verify)
    work = {}
    for login in (pro.address, "nobody@carnet.test", no_password.address, "not an address"):
        verified.clear()
        with pytest.raises(BadCredentials, match="invalid login or password"):
            await authenticate(ca, login, "wrong password!", client_ip=f"198.51.100.{len(work)}", protocol="smtp")
        work[login] = [h.split("$")[1:4] for h in verified]  # algorithm, version, parameters of each verification
    # Unknown users pay for one argon2id verification with the same parameters (a dummy hash): same cost, which
    # bench/auth_bench.py measures.
    assert work[pro.address] == work["nobody@carnet.test"] == work[no_password.address] == work["not an address"]
    assert len(work[pro.address]) == 1 and work[pro.address][0][0] == "argon2id"


async def test_throttling_per_account_and_across_processes(ca: Database, settings: Settings, db_url: str) -> None:
    pro = await mailboxes.add_professional(ca, settings, professional(1))
    await auth.set_password(ca, pro.address, PASSWORD)
    now = utcnow()
    for attempt in range(auth.ACCOUNT_LIMIT):
        with pytest.raises(BadCredentials):
            await authenticate(ca, pro.address, f"wrong {attempt}", client_ip=f"203.0.113.{attempt}",
                               protocol="imap", now=now)
    # Another process (its own engine) sees the block, even with the right password.
    other = Database(async_url(db_url))
    try:
        with pytest.raises(Throttled) as blocked:
            await authenticate(other, pro.address, PASSWORD, client_ip="203.0.113.99", protocol="imap", now=now)
    finally:
        await other.close()
    assert blocked.value.retry_after == 60
    # Once the block is over, the right password works and clears the account's counter.
    later = now + timedelta(seconds=61)
    assert (await authenticate(ca, pro.address, PASSWORD, client_ip="203.0.113.1", protocol="imap", now=later)).address
    with pytest.raises(BadCredentials):
        await authenticate(ca, pro.address, "wrong again", client_ip="203.0.113.1", protocol="imap", now=later)


async def test_throttling_per_client_address(ca: Database, settings: Settings) -> None:
    now = utcnow()
    for attempt in range(auth.ADDRESS_LIMIT):
        with pytest.raises(BadCredentials):
            await authenticate(ca, f"user{attempt}@carnet.test", "guess", client_ip="2001:db8::1", protocol="smtp",
                               now=now)
    with pytest.raises(Throttled):  # same /64
        await authenticate(ca, "someone@carnet.test", "guess", client_ip="2001:db8::ffff", protocol="smtp", now=now)
    with pytest.raises(BadCredentials):  # another network is not blocked
        await authenticate(ca, "someone@carnet.test", "guess", client_ip="2001:db8:1::1", protocol="smtp", now=now)


async def test_app_passwords(ca: Database, settings: Settings) -> None:
    pro = await mailboxes.add_professional(ca, settings, professional(1))
    info, secret = await auth.create_app_password(ca, pro.address, "Thunderbird, office")
    assert len(secret) == 23 and secret.count("-") == 3
    principal = await authenticate(ca, pro.address, secret.upper(), client_ip="192.0.2.7", protocol="imap")
    assert principal.method == "app-password" and principal.app_password_id == info.id
    [listed] = await auth.list_app_passwords(ca, pro.address)
    assert listed.label == "Thunderbird, office" and listed.last_used_at is not None and listed.revoked_at is None
    await auth.revoke_app_password(ca, pro.address, info.id)
    with pytest.raises(BadCredentials):
        await authenticate(ca, pro.address, secret, client_ip="192.0.2.7", protocol="imap")
    with pytest.raises(NotFound, match="no active app password"):
        await auth.revoke_app_password(ca, pro.address, info.id)


async def test_password_policy_and_disabled(ca: Database, settings: Settings) -> None:
    pro = await mailboxes.add_professional(ca, settings, professional(1))
    with pytest.raises(InvalidInput, match="at least 12 are required"):
        await auth.set_password(ca, pro.address, "short")
    await auth.set_password(ca, pro.address, PASSWORD)
    _info, secret = await auth.create_app_password(ca, pro.address, "phone")
    await mailboxes.disable_mailbox(ca, settings, pro.address)
    with pytest.raises(Disabled, match="is disabled"):
        await authenticate(ca, pro.address, PASSWORD, client_ip="192.0.2.8", protocol="imap")
    with pytest.raises(BadCredentials):  # app passwords were revoked with the mailbox
        await authenticate(ca, pro.address, secret, client_ip="192.0.2.8", protocol="imap")


async def test_may_send_as(ca: Database, settings: Settings) -> None:
    [service] = await mailboxes.add_organisation(ca, settings, organisation(1), services=["Accueil"])
    pro = await mailboxes.add_professional(ca, settings, professional(1, organisations=["1" + finess(1)]))
    outsider = await mailboxes.add_professional(ca, settings, professional(2, "Paul", "Petit"))
    for address in (pro.address, outsider.address):
        await auth.set_password(ca, address, PASSWORD)
    principal = await authenticate(ca, pro.address, PASSWORD, client_ip="192.0.2.9", protocol="smtp")
    assert await may_send_as(ca, principal, pro.address.upper())
    assert not await may_send_as(ca, principal, service.address)
    await mailboxes.grant_send_as(ca, service.address, "8" + rpps(1))
    assert await may_send_as(ca, principal, service.address)
    assert not await may_send_as(ca, principal, outsider.address)
    with pytest.raises(InvalidInput, match="does not work for the organisation"):
        await mailboxes.grant_send_as(ca, service.address, outsider.address)
    assert await mailboxes.revoke_send_as(ca, service.address, pro.address)
    assert not await may_send_as(ca, principal, service.address)


async def test_legal_representative_acts_for_the_patient(ca: Database, settings: Settings) -> None:
    child = await mailboxes.add_patient(ca, settings, patient(1, first_names="Tom"))
    parent = await mailboxes.add_patient(ca, settings, patient(2, first_names="Julie"))
    await auth.set_password(ca, parent.address, PASSWORD)
    await mailboxes.add_representative(ca, settings, child.address, parent.ins or "", "parent",
                                       valid_until=date.today() + timedelta(days=365))
    principal = await authenticate(ca, parent.address, PASSWORD, client_ip="192.0.2.10", protocol="webmail")
    assert await auth.send_as_addresses(ca, principal) == [parent.address, child.address]
    assert await may_send_as(ca, principal, child.address)
    assert not await may_send_as(ca, principal, child.address,
                                 today=date.today() + timedelta(days=400))  # the child came of age
    with pytest.raises(InvalidInput, match="role 'uncle' must be one of"):
        await mailboxes.add_representative(ca, settings, child.address, parent.address, "uncle")
    with pytest.raises(InvalidInput, match="own legal representative"):
        await mailboxes.add_representative(ca, settings, child.address, child.address, "guardian")


async def test_weaker_hashes_are_upgraded_at_login(ca: Database, settings: Settings) -> None:
    from argon2 import PasswordHasher

    from carnet.directory import store

    pro = await mailboxes.add_professional(ca, settings, professional(1))
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    async with ca.transaction() as session:
        await store.update_mailbox(session, pro.id, password_hash=weak)
    await authenticate(ca, pro.address, PASSWORD, client_ip="192.0.2.11", protocol="imap")
    async with ca.session() as session:
        upgraded = (await store.mailbox_by_address(session, pro.address)).password_hash  # type: ignore[union-attr]
    assert upgraded != weak and upgraded.startswith("$argon2id$v=19$m=65536,t=3,p=4$")  # type: ignore[union-attr]
