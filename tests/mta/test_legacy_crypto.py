"""Encryption towards a peer follows its operator's legacy flag in the trust space (RFC 8551 §2.7, RFC 5652, RFC
5083/5084): a peer marked legacy gets EnvelopedData, AES-256-CBC, RSAES-PKCS1-v1_5, and its gateway records the
message as not integrity-protected, with a warning; once the flag is cleared it gets AuthEnvelopedData, AES-256-GCM,
RSAES-OAEP. The bytes A relays are read off ``carnet.mta.delivery.send``."""

from __future__ import annotations

import asyncio
import email
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from instances import extra_database, instance_settings
from mtahelp import Platform, header, running_platform, submit, text_message, trust

from carnet.directory.records import MailboxInfo
from carnet.mta import delivery

FAST = {"retry_schedule": [timedelta(seconds=0.3)], "queue_poll_interval": 0.2, "smtp_timeout": 10.0}


async def signatures(platform: Platform, mailbox: MailboxInfo) -> list[dict[str, Any]]:
    """The stored verification results of a mailbox's INBOX, in UID order."""
    store = platform.store
    folder = await store.get_folder(mailbox.id, "INBOX")
    states = await store.snapshot(folder.id)
    return [s.signature for s in await store.summaries(folder.id, [s.uid for s in states])]


def envelope(relayed: bytes) -> tuple[str, str, str, str]:
    """(S/MIME type, CMS content type, content-encryption algorithm, key-transport algorithm) of a relayed message."""
    message = email.message_from_bytes(relayed)
    assert message.get_content_type() == "application/pkcs7-mime"
    info = cms.ContentInfo.load(message.get_payload(decode=True))
    content = info["content"]
    [recipient] = content["recipient_infos"]
    encrypted = content["auth_encrypted_content_info" if isinstance(content, cms.AuthEnvelopedData) else
                        "encrypted_content_info"]
    return (
        message.get_param("smime-type"),
        info["content_type"].native,
        encrypted["content_encryption_algorithm"]["algorithm"].native,
        recipient.chosen["key_encryption_algorithm"]["algorithm"].native,
    )


async def test_legacy_peer_gets_cbc_others_gcm(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    relayed: list[bytes] = []
    send = delivery.send

    async def recording_send(target: delivery.Target, **kwargs: Any) -> dict[str, tuple[int, str]]:
        relayed.append(kwargs["data"])
        return await send(target, **kwargs)

    monkeypatch.setattr(delivery, "send", recording_send)
    a_settings = instance_settings(tmp_path, "a.test", db_url)
    async with extra_database(db_url, tmp_path, "b") as b_url:
        b_settings = instance_settings(tmp_path, "b.test", b_url)
        async with (
            running_platform(a_settings, http_tls=True, populate_with=1, **FAST) as a,
            running_platform(b_settings, http_tls=True, populate_with=11, **FAST) as b,
        ):
            assert (await trust(a, b, legacy_crypto=True)).legacy_crypto
            await trust(b, a)
            anne, bob = a.people.anne, b.people.bob
            message = text_message(anne.address, bob.address, subject="legacy")
            assert await asyncio.to_thread(submit, a, anne.address, anne.address, [bob.address], message) == {}
            [raw] = await b.wait_inbox(bob, 1)
            assert envelope(relayed[-1]) == ("enveloped-data", "enveloped_data", "aes256_cbc", "rsaes_pkcs1v15")
            assert header(raw, "Carnet-Signature").startswith('valid; signer="Anne Martin"')
            assert "encrypted=aes256_cbc" in header(raw, "Carnet-Signature")
            [stored] = await signatures(b, bob)
            assert stored["encrypted"] and stored["encryption_algorithm"] == "aes256_cbc"
            assert stored["integrity_protected"] is False
            assert any("no integrity protection" in warning for warning in stored["warnings"]), stored["warnings"]
            # The flag cleared (B's whitelist says ChiffrementHerite false): AuthEnvelopedData again.
            assert not (await trust(a, b)).legacy_crypto
            message = text_message(anne.address, bob.address, subject="modern")
            assert await asyncio.to_thread(submit, a, anne.address, anne.address, [bob.address], message) == {}
            messages = await b.wait_inbox(bob, 2)
            assert header(messages[-1], "Subject") == "modern"
            assert envelope(relayed[-1]) == (
                "authEnveloped-data", "authenticated_enveloped_data", "aes256_gcm", "rsaes_oaep"
            )
            assert "encrypted=aes256_gcm" in header(messages[-1], "Carnet-Signature")
            stored = (await signatures(b, bob))[-1]
            assert stored["integrity_protected"] is True and stored["encryption_algorithm"] == "aes256_gcm"
            assert not any("integrity" in warning for warning in stored["warnings"])
