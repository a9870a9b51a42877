#!/usr/bin/env python3
"""A complete ingestwatch subscriber in Python (websockets).

Authenticates with a bearer token, subscribes to event and KPI topics, keeps
the last event seq it processed and the KPI figures (snapshot + merge-patch
deltas), reconnects with jittered exponential backoff and resumes with
``since`` so it sees every event exactly once across disconnects; handles
``resync`` (slow consumer), an expiring token (in-band ``auth`` with a fresh
token read from INGESTWATCH_TOKEN_FILE) and the close codes of
docs/protocol.md.

Settings (environment):
  INGESTWATCH_WS_URL      ws://127.0.0.1:8080/ws
  INGESTWATCH_TOKEN       a JWT (or INGESTWATCH_TOKEN_FILE: a file holding one,
                          re-read on every connect and when the token expires)
  INGESTWATCH_TOPICS      events,kpis   (errors: only error events)
  INGESTWATCH_SINCE       resume after this seq (default: from now)

Output: one JSON object per line on stdout — {"type":"event","seq":…,"kind":…,
"source":…,"rows":…} per event, {"type":"kpis","seq":…,"received_24h":…} per
KPI update, {"type":"connected","since":…} per connection. Logs go to stderr.
Exit codes: 0 on Ctrl-C, 2 on a protocol error, 3 when access is refused.
"""

import asyncio
import json
import os
import random
import sys

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

URL = os.environ.get("INGESTWATCH_WS_URL", "ws://127.0.0.1:8080/ws")
TOPICS = [t for t in os.environ.get("INGESTWATCH_TOPICS", "events,kpis").split(",") if t]


def token():
    path = os.environ.get("INGESTWATCH_TOKEN_FILE")
    if path:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    return os.environ.get("INGESTWATCH_TOKEN", "")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def merge_patch(target, patch):
    """RFC 7396: apply `patch` to `target` (a dict) in place; returns it."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


class Subscriber:
    def __init__(self, since):
        self.since = since  # last event seq processed (None: start from now)
        self.kpis = {}

    async def session(self):
        headers = {"Authorization": f"Bearer {token()}"}
        async with websockets.connect(URL, additional_headers=headers, max_size=2**24) as ws:
            hello = json.loads(await ws.recv())
            if self.since is None:
                self.since = hello["seq"]
            emit({"type": "connected", "since": self.since})
            await ws.send(json.dumps({"op": "subscribe", "topics": TOPICS, "since": self.since}))
            async for raw in ws:
                await self.handle(ws, json.loads(raw))

    async def handle(self, ws, f):
        kind = f.get("type")
        if kind == "event":
            if f["seq"] <= self.since:
                return  # never happens with `since`; a guard, not a filter
            self.since = f["seq"]
            emit({"type": "event", "seq": f["seq"], "kind": f["kind"],
                  "source": f.get("source"), "rows": f.get("rows")})
        elif kind == "snapshot" and f.get("topic") == "kpis":
            self.kpis = f["data"]
            self.emit_kpis(f["seq"])
        elif kind == "delta" and f.get("topic") == "kpis":
            self.kpis = merge_patch(self.kpis, f["data"])
            self.emit_kpis(f["seq"])
        elif kind == "resync":
            # The server already resubscribed us from `since`: a fresh KPI
            # snapshot and the missed events follow. Nothing to do but note it.
            log(f"resync ({f.get('reason')}); resuming after {f.get('since')}")
        elif kind == "error":
            code = f.get("code")
            if code == "token_expired":
                await ws.send(json.dumps({"op": "auth", "token": token()}))
            elif code == "unavailable":
                await ws.send(json.dumps({"op": "subscribe", "topics": TOPICS, "since": self.since}))
            elif code in ("invalid_token", "rate_limited"):
                log(f"server: {code}: {f.get('message')}")
            else:
                raise ProtocolError(f"{code}: {f.get('message')}")

    def emit_kpis(self, seq):
        total = (self.kpis.get("24h") or {}).get("total") or {}
        emit({"type": "kpis", "seq": seq, "received_24h": total.get("received")})


class ProtocolError(Exception):
    pass


async def main():
    since = os.environ.get("INGESTWATCH_SINCE")
    sub = Subscriber(int(since) if since else None)
    delay = 0.1
    while True:
        try:
            await sub.session()
            delay = 0.1
        except ProtocolError as e:
            log(f"protocol error: {e}")
            return 2
        except InvalidStatus as e:
            status = e.response.status_code
            if status in (401, 403):
                log(f"access refused (HTTP {status}): check the token")
                return 3
            log(f"handshake refused (HTTP {status}); retrying")
        except ConnectionClosed as e:
            code = e.rcvd.code if e.rcvd else 1006
            if code == 4403:
                log("the token carries no ingestwatch role (4403)")
                return 3
            # 4401: the token expired; the next connect reads a fresh one.
            log(f"closed with {code}; reconnecting")
        except OSError as e:
            log(f"connection failed: {e}")
        # Jittered exponential backoff, 100 ms doubling to 10 s.
        await asyncio.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 10.0)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(0)
