"""Accepted means durable: a load generator submits messages to a ``carnet serve`` subprocess, which is SIGKILLed
mid-load and restarted. Every message that got its ``250`` is in the mailbox exactly once; the clients then send again
what was not acknowledged (the same bytes, as a real client retries) and still nothing is stored twice. A final
SIGTERM under load shuts the server down cleanly (exit 0) with every acknowledged message stored."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections import Counter
from pathlib import Path

from mtahelp import populate

from carnet.config import Settings
from carnet.db import Database
from carnet.mailbox.store import MailStore
from carnet.pki import authority

SESSIONS = 10
PER_SESSION = 120  # 1,200 messages


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def environment(settings: Settings, ports: list[int]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARNET_")}
    env.update(
        CARNET_DOMAIN=settings.domain,
        CARNET_DATA_DIR=str(settings.data_dir),
        CARNET_DATABASE_URL=settings.database_url,
        CARNET_KEY_SECRET=settings.key_secret.get_secret_value(),
        CARNET_TEST_MODE="true",
    )
    names = ("HTTP", "SMTP_RELAY", "SMTP_SUBMISSION", "SMTP_SUBMISSIONS", "SMTP_TRUSTED", "IMAP", "IMAPS")
    for name, port in zip(names, ports, strict=True):
        env[f"CARNET_LISTEN__{name}"] = f"127.0.0.1:{port}"
    return env


async def start_server(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    carnet = Path(sys.executable).parent / "carnet"
    process = await asyncio.create_subprocess_exec(
        str(carnet),
        "serve",
        "--log-level",
        "WARNING",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return process
        except OSError:
            assert process.returncode is None, "carnet serve exited"
            await asyncio.sleep(0.1)
    raise AssertionError("carnet serve did not start")


def message(sender: str, to: str, name: str) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {name}\r\nMessage-ID: <{name}@load.test>\r\n"
        f"Date: Mon, 5 Jan 2026 10:00:00 +0000\r\n\r\n" + "ligne de resultat\r\n" * 60
    ).encode()


async def session(
    port: int, sender: str, to: str, names: list[str], acknowledged: set[str], stop: asyncio.Event
) -> None:
    """Send ``names`` one after the other on one connection; record the acknowledged ones; stop on any error."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return

    async def reply() -> int:
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return int(line[:3])

    try:
        await reply()
        writer.write(b"EHLO load.test\r\n")
        await reply()
        for name in names:
            if stop.is_set():
                break
            writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode())
            if (await reply(), await reply(), await reply()) != (250, 250, 354):
                break
            writer.write(message(sender, to, name) + b".\r\n")
            await writer.drain()
            if await reply() == 250:
                acknowledged.add(name)
    except (OSError, ConnectionError, TimeoutError, ValueError):
        pass
    finally:
        writer.close()


async def load(
    port: int, sender: str, to: str, batches: list[list[str]], acknowledged: set[str], stop: asyncio.Event
) -> None:
    await asyncio.gather(*(session(port, sender, to, names, acknowledged, stop) for names in batches))


async def stored_subjects(settings: Settings, mailbox_id: int) -> Counter[str]:
    db = Database(settings.sqlalchemy_url)
    store = MailStore(db)
    try:
        folder = await store.get_folder(mailbox_id, "INBOX")
        uids = [state.uid for state in await store.snapshot(folder.id)]
        return Counter(summary.subject for summary in await store.summaries(folder.id, uids))
    finally:
        await store.close()
        await db.close()


async def test_sigkill_under_load_loses_and_duplicates_nothing(settings: Settings) -> None:
    db = Database(settings.sqlalchemy_url)
    await authority.init_hierarchy(db, settings)
    people = await populate(db, settings)
    await db.close()
    ports = free_ports(7)
    env, trusted = environment(settings, ports), ports[4]
    lab, bob = people.lab.address, people.bob.address
    batches = [[f"load-{s}-{n}" for n in range(PER_SESSION)] for s in range(SESSIONS)]
    everything = {name for names in batches for name in names}
    acknowledged: set[str] = set()

    server = await start_server(env, trusted)
    stop = asyncio.Event()
    loader = asyncio.create_task(load(trusted, lab, bob, batches, acknowledged, stop))
    while len(acknowledged) < 250 and not loader.done():  # noqa: ASYNC110  (polling a counter the sessions fill)
        await asyncio.sleep(0.02)
    server.send_signal(signal.SIGKILL)
    await server.wait()
    await loader
    assert 250 <= len(acknowledged) < len(everything)

    server = await start_server(env, trusted)
    counts = await stored_subjects(settings, people.bob.id)
    assert all(counts[name] == 1 for name in acknowledged), "an acknowledged message is missing or doubled"
    assert all(count == 1 for count in counts.values())
    # The clients send again everything that was not acknowledged (some of it was committed before the crash).
    remaining = [[name for name in names if name not in acknowledged] for names in batches]
    await load(trusted, lab, bob, remaining, acknowledged, asyncio.Event())
    assert acknowledged == everything
    counts = await stored_subjects(settings, people.bob.id)
    assert counts == Counter(everything)

    # SIGTERM under load: the transactions in flight finish, the process exits 0, acknowledged means stored.
    late = [[f"late-{s}-{n}" for n in range(40)] for s in range(SESSIONS)]
    late_acknowledged: set[str] = set()
    loader = asyncio.create_task(load(trusted, lab, bob, late, late_acknowledged, asyncio.Event()))
    while len(late_acknowledged) < 50 and not loader.done():  # noqa: ASYNC110  (polling a counter)
        await asyncio.sleep(0.02)
    server.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(server.wait(), 60) == 0
    await loader
    counts = await stored_subjects(settings, people.bob.id)
    assert all(counts[name] == 1 for name in late_acknowledged)
