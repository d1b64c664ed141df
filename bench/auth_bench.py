"""How long a failed sign-in takes for a known account, an unknown address, an account without a password and a
malformed login: unknown logins verify a dummy argon2id hash, so the four should cost the same (no account
enumeration by timing). Prints the figures; asserts nothing.

    .venv/bin/python bench/auth_bench.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from carnet.config import load_settings
from carnet.db import Database, upgrade, utcnow
from carnet.directory import auth, mailboxes
from carnet.directory.identifiers import synthetic_rpps
from carnet.directory.records import ProfessionalInput
from carnet.pki import authority


async def main(rounds: int) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="carnet-auth-bench-"))
    settings = load_settings(domain="bench.carnet.test", data_dir=workdir / "var", key_secret="bench",
                             test_mode=True)
    await upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    try:
        await authority.init_hierarchy(db, settings)
        known = await mailboxes.add_professional(
            db, settings, ProfessionalInput("RPPS", synthetic_rpps(1), "Anne", "Martin", "10", None, []))
        await auth.set_password(db, known.address, "correct horse battery staple")
        without = await mailboxes.add_professional(
            db, settings, ProfessionalInput("RPPS", synthetic_rpps(2), "Paul", "Petit", "10", None, []))
        logins = {"known account": known.address, "unknown address": "nobody@bench.carnet.test",
                  "account without password": without.address, "malformed login": "not an address"}
        print(f"failed sign-in, {rounds} rounds each (argon2id RFC 9106 low-memory profile), ms")
        print(f"  {'login':<28}{'p50':>8}{'min':>8}{'max':>8}")
        start = utcnow()
        for n, (name, login) in enumerate(logins.items()):
            times = []
            for attempt in range(rounds):
                started = time.perf_counter()
                with contextlib.suppress(auth.AuthError):  # a day apart: the throttle never blocks a round
                    await auth.authenticate(db, login, "wrong password!", protocol="bench",
                                            client_ip=f"198.51.{n}.{attempt}", now=start + timedelta(days=attempt))
                times.append((time.perf_counter() - started) * 1000)
            print(f"  {name:<28}{statistics.median(times):>8.1f}{min(times):>8.1f}{max(times):>8.1f}")
    finally:
        await db.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
