"""Scripted transcripts (``transcripts/*.imap``) replayed against the server: the examples of RFC 3501, RFC 9051 and
the extensions' RFCs, compared literally where the RFC is exact.

Format, one item a line (``#`` starts a comment):

- ``!append FOLDER MESSAGE [(FLAGS)] ["DATE"]``, ``!fill FOLDER COUNT``, ``!create FOLDER`` — set up through the
  store; MESSAGE is one of :data:`MESSAGES` (``rfc-sample`` is the RFC 3501 §7.4.2 message, byte for byte in size);
- ``!connect plain`` — start over on the STARTTLS port without TLS and without logging in (default: implicit TLS,
  logged in);
- ``C: line`` sends a command; ``C? line`` sends one whose answer only has to be OK;
- ``S: line`` is an expected response line, in order; ``S~ line`` an expected untagged line in any order. The last
  ``S:`` line of a command is its tagged response, compared up to its response code (the human text is free).
  ``\\r\\n`` in a line stands for CRLF (literals), ``\\xNN`` for an octet. ``<<name>>`` is replaced by a value
  from the store before the command (``uidvalidity``, ``uidnext``, ``highestmodseq``, ``…:FOLDER``, ``address``,
  ``password``); ``<<n>>`` matches a number and ``<<*>>`` any text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from carnet.mailbox.imap.parser import Reader

from .imaphelp import ImapEnv, RawClient, plain

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.imap"))


def rfc_sample() -> bytes:
    """The message of the RFC 3501 §7.4.2 / RFC 9051 §7.5.2 FETCH example: 4286 octets, a 3028-octet body of
    92 lines."""
    header = (
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
        "From: Terry Gray <gray@cac.washington.edu>\r\n"
        "Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
        "To: imap@cac.washington.edu\r\n"
        "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
        "Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    )
    received = "Received: from shellx.cac.washington.edu by mx.cac.washington.edu; Wed, 17 Jul 1996 02:23:30 -0700\r\n"
    while len(header) + len(received) + 2 <= 1258 - 20:
        header = received + header
    filler = 1258 - 2 - len(header) - len("X-Padding: \r\n")
    header = header + "X-Padding: " + "x" * filler + "\r\n" + "\r\n"
    assert len(header) == 1258
    lines = [f"IMAP4rev1 WG minutes, item {i:02d}." for i in range(92)]
    lines[-1] += "." * (3028 - sum(len(line) + 2 for line in lines))
    body = "\r\n".join(lines) + "\r\n"
    assert len(body) == 3028 and body.count("\n") == 92
    return (header + body).encode()


def rfc_multipart() -> bytes:
    """A message whose BODY is the RFC 3501 §7.4.2 BODYSTRUCTURE example: parts of 1152 octets / 23 lines and
    4554 octets / 73 lines."""
    first = "\r\n".join(["Text of the first part."] * 22 + ["x"])
    first += "y" * (1152 - len(first))
    encoded = "QUFB" * 1200  # "AAA…" in base64
    second_lines = [encoded[i * 61 : i * 61 + 61] for i in range(30)]
    second_lines += [encoded[1830 + i * 60 : 1830 + i * 60 + 60] for i in range(43)]
    second = "\r\n".join(second_lines)
    assert len(first) == 1152 and len(second) == 4554
    return (
        "From: Terry Gray <gray@cac.washington.edu>\r\nSubject: cc.diff\r\nMIME-Version: 1.0\r\n"
        'Content-Type: MULTIPART/MIXED; BOUNDARY="=b"\r\n\r\n'
        "--=b\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n" + first + "\r\n"
        "--=b\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n"
        "Content-ID: <960723163407.20117h@cac.washington.edu>\r\nContent-Description: Compiler diff\r\n"
        "Content-Transfer-Encoding: BASE64\r\n\r\n" + second + "\r\n--=b--\r\n"
    ).encode()


def binary_attachment() -> bytes:
    """A message with an application/octet-stream part holding the octets 0 to 5 (BINARY, RFC 3516)."""
    return (
        b"From: Labo <labo@example.org>\r\nSubject: data\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="x"\r\n\r\n'
        b"--x\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
        b"--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n"
        b"--x--\r\n"
    )


def _person(name: str, address: str, i: int) -> bytes:
    return plain(i, subject=f"Message {i}", sender=f"{name} <{address}>")


MESSAGES: dict[str, Callable[[], bytes]] = {
    "rfc-sample": rfc_sample,
    "rfc-multipart": rfc_multipart,
    "binary": binary_attachment,
    "smith": lambda: _person("John Smith", "smith@example.org", 1),
    "jones": lambda: _person("Jane Jones", "jones@example.org", 2),
    "utf8": lambda: plain(3, subject="Résultats d'analyse", body="Hémoglobine normale.\r\n"),
}


# The runner -----------------------------------------------------------------------------------------------------


def _unescape(text: str) -> bytes:
    text = text.replace("\\r\\n", "\r\n")
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text).encode()


async def _values(env: ImapEnv) -> dict[str, str]:
    values = {"address": env.address, "password": env.password}
    for folder in await env.store.list_folders(env.mailbox_id):
        for key in ("uidvalidity", "uidnext", "highestmodseq", "messages"):
            values[f"{key}:{folder.name}"] = str(getattr(folder, key))
            if folder.name == "INBOX":
                values[key] = str(getattr(folder, key))
    return values


def _pattern(expected: bytes, values: dict[str, str]) -> re.Pattern[bytes]:
    out = []
    for piece in re.split(rb"(<<[^>]*>>)", expected):
        if piece.startswith(b"<<") and piece.endswith(b">>"):
            name = piece[2:-2].decode()
            if name == "*":
                out.append(rb".*?")
            elif name == "n":
                out.append(rb"\d+")
            else:
                out.append(re.escape(values[name].encode()))
        else:
            out.append(re.escape(piece))
    return re.compile(b"".join(out), re.DOTALL)


def _tagged_head(line: bytes) -> bytes:
    """A tagged line up to its response code: the human-readable text is not compared."""
    match = re.match(rb"(\S+ (?:OK|NO|BAD))( \[[^\]]*\])?", line)
    assert match, line
    return match.group(0)


_APPEND = re.compile(r'!append (\S+) (\S+)(?: \(([^)]*)\))?(?: "([^"]+)")?$')


async def _setup(env: ImapEnv, line: str) -> None:
    append = _APPEND.match(line)
    if append:
        folder, name, flags, when = append.groups()
        moment = Reader(f'"{when}"'.encode()).date_time() if when else datetime.now().astimezone()
        await env.store.append(env.mailbox_id, folder, MESSAGES[name](), (flags or "").split(), moment)
        return
    directive, *args = line[1:].split()
    if directive == "fill":
        for i in range(int(args[1])):
            await env.store.append(env.mailbox_id, args[0], plain(100 + i))
    elif directive == "create":
        await env.store.create_folder(env.mailbox_id, " ".join(args))
    else:
        raise AssertionError(f"unknown directive {line}")


def _steps(path: Path) -> list[tuple[str, str]]:
    steps: list[tuple[str, str]] = []
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        if not raw_line.strip() or raw_line.lstrip().startswith("#"):
            continue
        steps.append((raw_line[:2], raw_line[3:] if raw_line[:2] in ("C:", "C?", "S:", "S~") else raw_line))
    return steps


async def run_transcript(env: ImapEnv, path: Path) -> int:
    """Replay one transcript; returns the number of commands checked."""
    steps = _steps(path)
    client: RawClient | None = None
    checked = 0
    i = 0
    try:
        while i < len(steps):
            kind, text = steps[i]
            i += 1
            if kind.startswith("!"):
                if text.startswith("!connect"):
                    if client is not None:
                        await client.close()
                    client = await RawClient.connect(env, implicit="plain" not in text, login="plain" not in text)
                else:
                    await _setup(env, text)
                continue
            if client is None:
                client = await RawClient.connect(env)
            assert kind in ("C:", "C?"), f"{path.name}: expected a command, got {kind} {text}"
            expected: list[tuple[str, str]] = []
            while i < len(steps) and steps[i][0] in ("S:", "S~"):
                expected.append(steps[i])
                i += 1
            values = await _values(env)
            command = text
            for name, value in values.items():
                command = command.replace(f"<<{name}>>", value)
            tag = command.split(" ", 1)[0]
            lines = await client.command(_unescape(command), tag=tag)
            tagged_line, untagged = lines[-1].rstrip(b"\r\n"), [line.rstrip(b"\r\n") for line in lines[:-1]]
            context = f"{path.name}: {command!r} answered\n" + b"\n".join(lines).decode(errors="replace")
            if kind == "C?":
                assert tagged_line.startswith(tag.encode() + b" OK"), context
                continue
            assert expected and expected[-1][0] == "S:", f"{path.name}: {command!r} needs a tagged S: line"
            want_tagged = _unescape(expected[-1][1])
            assert _pattern(_tagged_head(want_tagged), values).fullmatch(_tagged_head(tagged_line)), context
            ordered = [_pattern(_unescape(t), values) for k, t in expected[:-1] if k == "S:"]
            unordered = [_pattern(_unescape(t), values) for k, t in expected[:-1] if k == "S~"]
            if unordered:
                remaining = list(untagged)
                for pattern in ordered + unordered:
                    found = next((line for line in remaining if pattern.fullmatch(line)), None)
                    assert found is not None, f"{context}\n--- no line matches {pattern.pattern!r}"
                    remaining.remove(found)
                assert not remaining, f"{context}\n--- unexpected {remaining}"
            else:
                assert len(untagged) == len(ordered), f"{context}\n--- expected {len(ordered)} untagged lines"
                for line, pattern in zip(untagged, ordered, strict=True):
                    assert pattern.fullmatch(line), f"{context}\n--- {line!r} does not match {pattern.pattern!r}"
            checked += 1
    finally:
        if client is not None:
            await client.close()
    return checked


def test_sample_messages_have_the_rfc_sizes() -> None:
    assert len(rfc_sample()) == 4286


async def test_transcripts(imap: ImapEnv) -> None:
    """Every transcript, each on a fresh mailbox (one server for all: the fixture is the expensive part)."""
    assert len(TRANSCRIPTS) >= 10
    failures = []
    for n, path in enumerate(TRANSCRIPTS):
        address, mailbox_id = await imap.add_user(100 + n, "Transcript", f"Numero{n}")
        env = replace(imap, address=address, mailbox_id=mailbox_id)
        try:
            assert await run_transcript(env, path) >= 1
        except AssertionError as exc:
            failures.append(f"{path.name}: {exc}")
    assert not failures, "\n\n".join(failures)
