"""S/MIME sign and verify throughput, single process, detached multipart/signed, 4 KiB messages.

Run: ``.venv/bin/python bench/pki_bench.py [--seconds 3] [--profile sign|verify]``. The PKI is generated on the
fly with ``tests/testpki.py`` (root → intermediate → leaf, CRLs in the trust store, hard-fail revocation), so
verification does real chain validation; the chain cache is warmed first, as it is in a running gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import testpki  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

from carnet.pki.smime.credentials import SignerCredential  # noqa: E402
from carnet.pki.smime.result import Status  # noqa: E402
from carnet.pki.smime.sign import sign_message  # noqa: E402
from carnet.pki.smime.validation import ChainValidator, TrustStore  # noqa: E402
from carnet.pki.smime.verify import verify_message  # noqa: E402

LINE = b"Compte rendu de consultation: tension arterielle normale, pas de traitement.\r\n"


def make_message(sender: str, serial: int, size: int = 4096) -> bytes:
    """An RFC 5322 message whose body makes the whole message ``size`` bytes."""
    headers = (
        f"From: Dr Test <{sender}>\r\nTo: patient@carnet.test\r\nSubject: Resultats {serial}\r\n"
        f"Message-ID: <{serial}.bench@carnet.test>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    body = (LINE * (size // len(LINE) + 1))[: size - len(headers) - 2] + b"\r\n"
    return headers + body


def rate(seconds: float, action: Callable[[int], object]) -> float:
    """Calls per second of ``action(i)`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            action(count)
            count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


async def verify_rate(seconds: float, signed: list[bytes], validator: ChainValidator) -> float:
    count, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            result = await verify_message(signed[count % len(signed)], validator)
            if result.status is not Status.VALID:
                raise SystemExit(f"verification failed: {result.status} {result.detail}")
            count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--profile", choices=["sign", "verify"], help="print a cProfile of one RSA phase")
    args = parser.parse_args()

    pki = testpki.build_test_pki()
    crls = [crl.public_bytes(serialization.Encoding.DER) for crl in pki.crls]
    validator = ChainValidator(TrustStore([pki.root.cert], crls=crls))
    print(f"S/MIME detached, 4 KiB messages, single process, {args.seconds:g} s per measurement")
    print(f"{'key':<10} {'sign msg/s':>12} {'verify msg/s':>14}")
    signers = (("RSA-2048", pki.alice, "alice@carnet.test"), ("P-256", pki.carol_ec, "carol@carnet.test"))
    for label, issued, sender in signers:
        credential = SignerCredential(issued.key, issued.cert, tuple(issued.chain))
        messages = [make_message(sender, i) for i in range(256)]
        assert all(len(m) == 4096 for m in messages)
        signed = [sign_message(m, credential) for m in messages]
        asyncio.run(verify_rate(0.2, signed, validator))  # warm the certificate and chain caches

        def sign(i: int, credential: SignerCredential = credential, messages: list[bytes] = messages) -> bytes:
            return sign_message(messages[i % len(messages)], credential)

        if args.profile and label == "RSA-2048":
            profiler = cProfile.Profile()
            profiler.enable()
            if args.profile == "sign":
                rate(args.seconds, sign)
            else:
                asyncio.run(verify_rate(args.seconds, signed, validator))
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        sign_rate = rate(args.seconds, sign)
        verified = asyncio.run(verify_rate(args.seconds, signed, validator))
        print(f"{label:<10} {sign_rate:>12,.0f} {verified:>14,.0f}")
    print(f"chain cache: {validator.hits} hits, {validator.misses} misses")


if __name__ == "__main__":
    main()
