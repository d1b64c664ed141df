#!/usr/bin/env bash
# End-to-end SMTP benchmark of carnet (issue "MTA"): Postfix's smtp-source sends MESSAGES messages of SIZE octets
# over SESSIONS parallel sessions to the trusted-network listener of a fresh `carnet serve`; we time until every
# message is visible in the recipient's INBOX in the message store (the folder's message count, what IMAP STATUS
# reports), then check that every stored message is signed and its signature verifies (carnet's verifier on all of
# them, `openssl cms -verify` on a sample).
#
# usage: bench/smtp_bench.sh [MESSAGES [SESSIONS [SIZE]]]      (default 5000 20 4096)
# env:   CARNET_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/DBNAME (an empty database) to bench
#        PostgreSQL instead of the default SQLite; CARNET_BENCH_WORKERS=N runs N `carnet serve` processes sharing
#        the SMTP ports (SO_REUSEPORT; PostgreSQL only); CARNET_BENCH_KEEP=1 keeps the working directory.
set -euo pipefail

MESSAGES=${1:-5000}
SESSIONS=${2:-20}
SIZE=${3:-4096}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
CARNET=$ROOT/.venv/bin/carnet
command -v smtp-source >/dev/null || { echo "smtp-source missing: apt-get install postfix" >&2; exit 2; }

WORK=$(mktemp -d /tmp/carnet-bench.XXXXXX)
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export CARNET_DOMAIN=bench.test
export CARNET_DATA_DIR=$WORK/var
export CARNET_KEY_SECRET=bench-key-encryption-secret
export CARNET_DATABASE_URL=${CARNET_BENCH_DATABASE_URL:-}
for listener in HTTP SMTP_RELAY SMTP_SUBMISSION SMTP_SUBMISSIONS SMTP_TRUSTED IMAP IMAPS; do
  export "CARNET_LISTEN__${listener}=127.0.0.1:$(free_port)"
done
unset CARNET_CONFIG

EXTRA=()
cleanup() {
  for pid in "${EXTRA[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" || true; done
  if [[ -n "${SERVER:-}" ]] && kill -0 "$SERVER" 2>/dev/null; then kill -TERM "$SERVER"; wait "$SERVER" || true; fi
  [[ -n "${CARNET_BENCH_KEEP:-}" ]] || rm -rf "$WORK"
}
trap cleanup EXIT

cd "$WORK"
"$CARNET" demo --no-serve > demo.log
PYTHONUNBUFFERED=1 "$CARNET" serve --log-level WARNING > serve.log 2>&1 &
SERVER=$!
for worker in $(seq 2 "${CARNET_BENCH_WORKERS:-1}"); do
  CARNET_LISTEN__HTTP= CARNET_LISTEN__IMAP= CARNET_LISTEN__IMAPS= "$CARNET" serve --log-level WARNING \
    > "serve-$worker.log" 2>&1 &
  EXTRA+=($!)
done
TRUSTED_PORT=${CARNET_LISTEN__SMTP_TRUSTED##*:}
# Ready when it says so ("carnet serving …", after every listener and worker started): the SMTP ports are bound
# earlier, while IMAP, HTTP and the queue runner are still starting.
for _ in $(seq 300); do
  grep -q "^carnet serving" serve.log && break
  kill -0 "$SERVER" 2>/dev/null || { cat serve.log >&2; exit 1; }
  sleep 0.1
done

# The counter starts (imports, database, mailbox lookup) before the clock does, then waits for smtp-source to finish
# and polls: its own start-up is not counted as the server's time.
cat > count.py <<'PY'
import asyncio, os, sys, time
from carnet.config import load_settings
from carnet.db import Database
from carnet.directory.mailboxes import lookup_mailbox
from carnet.mailbox.store import MailStore

async def main(expected: int, timeout: float) -> None:
    settings = load_settings()
    db = Database(settings.sqlalchemy_url)
    store = MailStore(db)
    mailbox = await lookup_mailbox(db, f"jean.dupont@{settings.domain}")
    open("counter.ready", "w").close()
    while not os.path.exists("sent.flag"):
        await asyncio.sleep(0.01)
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        try:
            count = (await store.get_folder(mailbox.id, "INBOX")).messages
        except Exception:
            count = 0
        if count >= expected:
            break
        await asyncio.sleep(0.02)
    print(count, f"{time.time():.6f}")
    await store.close()
    await db.close()

asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
PY

"$PY" count.py "$MESSAGES" 600 > counted.txt &
COUNTER=$!
EXTRA+=("$COUNTER")  # stopped by cleanup if smtp-source fails
for _ in $(seq 600); do [[ -e counter.ready ]] && break; sleep 0.05; done

START=$(date +%s.%N)
smtp-source -d -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f "laboratoire@bench.test" -t "jean.dupont@bench.test" \
  "127.0.0.1:$TRUSTED_PORT"
SENT=$(date +%s.%N)
touch sent.flag
wait "$COUNTER"
read -r STORED END < counted.txt

cat > verify.py <<'PY'
import asyncio, random, subprocess, sys
from carnet.config import load_settings
from carnet.db import Database
from carnet.directory.mailboxes import lookup_mailbox
from carnet.mailbox.store import MailStore
from carnet.pki.smime import ChainValidator, verify_message
from carnet.pki.trust import local_trust_store

async def main(sample: int) -> None:
    settings = load_settings()
    db = Database(settings.sqlalchemy_url)
    store = MailStore(db)
    mailbox = await lookup_mailbox(db, f"jean.dupont@{settings.domain}")
    folder = await store.get_folder(mailbox.id, "INBOX")
    states = await store.snapshot(folder.id)
    validator = ChainValidator(await local_trust_store(db, settings))
    bad, raws = 0, []
    for start in range(0, len(states), 500):
        for summary in await store.summaries(folder.id, [s.uid for s in states[start:start + 500]]):
            raw = await store.raw(summary.blob_id)
            ok = (summary.signature or {}).get("status") == "valid" and b"\r\nCarnet-Signature: valid;" in b"\r\n" + raw
            result = await verify_message(raw, validator)
            if not (ok and result.valid):
                bad += 1
            raws.append(raw)
    failures = 0
    for index, raw in enumerate(random.sample(raws, min(sample, len(raws)))):
        path = f"sample-{index}.eml"
        open(path, "wb").write(raw)
        done = subprocess.run(["openssl", "cms", "-verify", "-in", path, "-CAfile", str(settings.data_dir / "pki" / "ca-bundle.pem"),
                               "-out", "/dev/null"], capture_output=True)
        failures += done.returncode != 0
    print(f"{len(raws)} stored, {len(raws) - bad} signed and verified by carnet, {bad} not; "
          f"openssl cms -verify: {min(sample, len(raws)) - failures}/{min(sample, len(raws))} sampled messages OK")
    await store.close()
    await db.close()
    sys.exit(1 if bad or failures else 0)

asyncio.run(main(50))
PY

"$PY" - "$START" "$SENT" "$END" "$MESSAGES" "$STORED" "$SESSIONS" "$SIZE" <<'PY'
import sys
start, sent, end = map(float, sys.argv[1:4])
messages, stored, sessions, size = map(int, sys.argv[4:8])
print(f"smtp-source: {messages} messages of {size} octets over {sessions} sessions")
print(f"  all accepted (250) after {sent - start:.2f} s: {messages / (sent - start):.0f} msg/s")
print(f"  {stored} visible in the INBOX after {end - start:.2f} s: {stored / (end - start):.0f} msg/s end to end")
PY
"$PY" verify.py
