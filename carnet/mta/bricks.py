"""Bricks: consumers of signed mail (DMP deposits, agenda invitations, app intake) the router hands messages to.

A brick registers the addresses it owns — an exact address or a predicate on the recipient address — with
:func:`register_brick`. For each recipient that matches, the router calls the brick's handler **inside the
transaction that accepts the message**, after the gateway verified it: a brick's writes commit with the message or
not at all, and ``250`` is only sent once they did. The handler gets a :class:`BrickMessage` (the stored bytes and
the verification result, never unverified content) and returns the messages it answers with (:class:`Reply`); the
router signs each reply with the key of the mailbox it is from and routes it like any other message — a brick never
bypasses the gateway. A handler that raises refuses the message for its recipient with a temporary error.

Registries are per :class:`BrickRegistry`; :data:`default_registry` is the one ``carnet serve`` uses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True, slots=True)
class BrickMessage:
    recipient: str
    sender: str  # envelope sender ("" for the null reverse-path)
    from_address: str
    raw: bytes  # as stored: decrypted, still signed, with carnet's Carnet-Signature field on top
    signature: dict[str, object]  # the gateway's verification result
    message_key: str


@dataclass(frozen=True, slots=True)
class Reply:
    """A message a brick sends back: ``raw`` (RFC 5322, unsigned) from the directory mailbox ``from_address``."""

    from_address: str
    recipients: tuple[str, ...]
    raw: bytes


class BrickHandler(Protocol):
    def __call__(self, session: AsyncSession, message: BrickMessage) -> Awaitable[Sequence[Reply]]: ...


Matcher = str | Callable[[str], bool]


@dataclass(slots=True)
class BrickRegistry:
    _exact: dict[str, BrickHandler] = field(default_factory=dict)
    _predicates: list[tuple[Callable[[str], bool], BrickHandler]] = field(default_factory=list)

    def register(self, address_or_predicate: Matcher, handler: BrickHandler) -> None:
        if isinstance(address_or_predicate, str):
            self._exact[address_or_predicate.strip().lower()] = handler
        else:
            self._predicates.append((address_or_predicate, handler))

    def unregister(self, address_or_predicate: Matcher) -> None:
        if isinstance(address_or_predicate, str):
            self._exact.pop(address_or_predicate.strip().lower(), None)
        else:
            self._predicates = [(p, h) for p, h in self._predicates if p is not address_or_predicate]

    def find(self, address: str) -> BrickHandler | None:
        address = address.lower()
        handler = self._exact.get(address)
        if handler is not None:
            return handler
        for predicate, candidate in self._predicates:
            if predicate(address):
                return candidate
        return None


default_registry = BrickRegistry()


def register_brick(
    address_or_predicate: Matcher, handler: BrickHandler, *, registry: BrickRegistry | None = None
) -> None:
    """Route mail for an address (or every address a predicate accepts) to ``handler``."""
    (registry or default_registry).register(address_or_predicate, handler)


class EchoBrick:
    """The test brick: keeps what it receives and answers each message with a signed acknowledgement.

    It owns one address, which must be a directory mailbox (APP or ORG) so that its answers can be signed.
    """

    def __init__(self, address: str) -> None:
        self.address = address.lower()
        self.received: list[BrickMessage] = []

    async def __call__(self, session: AsyncSession, message: BrickMessage) -> Sequence[Reply]:
        self.received.append(message)
        if not message.sender or message.signature.get("status") != "valid":
            return ()
        from carnet.mta import headers

        domain = self.address.rpartition("@")[2]
        body = (
            f"From: <{self.address}>\r\nTo: <{message.sender}>\r\nSubject: accuse de reception\r\n"
            f"Date: {headers.date_now()}\r\nMessage-ID: {headers.new_message_id(domain)}\r\n"
            "Auto-Submitted: auto-replied\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Message {message.message_key[:16]} received by {self.address}.\r\n"
        )
        return (Reply(self.address, (message.sender,), body.encode()),)
