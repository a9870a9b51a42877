#!/usr/bin/env node
// A complete ingestwatch subscriber in Node (the `ws` package).
//
// Authenticates with a bearer token, subscribes to event and KPI topics, keeps
// the last event seq it processed and the KPI figures (snapshot + merge-patch
// deltas), reconnects with jittered exponential backoff and resumes with
// `since`, so it sees every event exactly once across disconnects; handles
// `resync` (slow consumer), an expiring token (in-band `auth` with a fresh
// token read from INGESTWATCH_TOKEN_FILE) and the close codes of
// docs/protocol.md.
//
// Settings (environment):
//   INGESTWATCH_WS_URL      ws://127.0.0.1:8080/ws
//   INGESTWATCH_TOKEN       a JWT (or INGESTWATCH_TOKEN_FILE: a file holding
//                           one, re-read on every connect and on expiry)
//   INGESTWATCH_TOPICS      events,kpis   (errors: only error events)
//   INGESTWATCH_SINCE       resume after this seq (default: from now)
//
// Output: one JSON object per line on stdout — {"type":"event","seq":…,
// "kind":…,"source":…,"rows":…} per event, {"type":"kpis","seq":…,
// "received_24h":…} per KPI update, {"type":"connected","since":…} per
// connection. Logs go to stderr. Exit codes: 2 protocol error, 3 access refused.

import { readFileSync } from "node:fs";
import WebSocket from "ws";

const URL = process.env.INGESTWATCH_WS_URL ?? "ws://127.0.0.1:8080/ws";
const TOPICS = (process.env.INGESTWATCH_TOPICS ?? "events,kpis").split(",").filter(Boolean);

const token = () =>
  process.env.INGESTWATCH_TOKEN_FILE
    ? readFileSync(process.env.INGESTWATCH_TOKEN_FILE, "utf8").trim()
    : (process.env.INGESTWATCH_TOKEN ?? "");
const log = (...args) => console.error(...args);
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

/** RFC 7396 merge patch: returns `target` with `patch` applied. */
function mergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out = target && typeof target === "object" && !Array.isArray(target) ? target : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

let since = process.env.INGESTWATCH_SINCE ? Number(process.env.INGESTWATCH_SINCE) : null;
let kpis = {};
let delay = 100;

function emitKpis(seq) {
  emit({ type: "kpis", seq, received_24h: kpis["24h"]?.total?.received ?? null });
}

function connect() {
  const ws = new WebSocket(URL, {
    headers: { Authorization: `Bearer ${token()}` },
    maxPayload: 16 * 1024 * 1024,
  });
  let helloSeen = false;

  ws.on("unexpected-response", (_req, res) => {
    if (res.statusCode === 401 || res.statusCode === 403) {
      log(`access refused (HTTP ${res.statusCode}): check the token`);
      process.exit(3);
    }
    log(`handshake refused (HTTP ${res.statusCode}); retrying`);
    ws.terminate();
  });

  ws.on("message", (raw) => {
    const f = JSON.parse(raw.toString());
    if (!helloSeen && f.type === "hello") {
      helloSeen = true;
      delay = 100;
      if (since === null) since = f.seq;
      emit({ type: "connected", since });
      ws.send(JSON.stringify({ op: "subscribe", topics: TOPICS, since }));
      return;
    }
    switch (f.type) {
      case "event":
        if (f.seq <= since) return; // never happens with `since`; a guard
        since = f.seq;
        emit({ type: "event", seq: f.seq, kind: f.kind, source: f.source ?? null, rows: f.rows ?? null });
        break;
      case "snapshot":
        if (f.topic === "kpis") {
          kpis = f.data;
          emitKpis(f.seq);
        }
        break;
      case "delta":
        if (f.topic === "kpis") {
          kpis = mergePatch(kpis, f.data);
          emitKpis(f.seq);
        }
        break;
      case "resync":
        // The server already resubscribed us from `since`: the missed events
        // and a fresh KPI snapshot follow.
        log(`resync (${f.reason}); resuming after ${f.since}`);
        break;
      case "error":
        if (f.code === "token_expired") ws.send(JSON.stringify({ op: "auth", token: token() }));
        else if (f.code === "unavailable") ws.send(JSON.stringify({ op: "subscribe", topics: TOPICS, since }));
        else if (f.code === "invalid_token" || f.code === "rate_limited") log(`server: ${f.code}: ${f.message}`);
        else {
          log(`protocol error: ${f.code}: ${f.message}`);
          process.exit(2);
        }
        break;
      default:
        break; // unknown frame types are ignored (protocol.md)
    }
  });

  ws.on("close", (code) => {
    if (code === 4403) {
      log("the token carries no ingestwatch role (4403)");
      process.exit(3);
    }
    // 4401: the token expired; the next connect reads a fresh one.
    log(`closed with ${code}; reconnecting`);
    retry();
  });
  ws.on("error", (e) => log(`connection error: ${e.message}`));
}

function retry() {
  // Jittered exponential backoff, 100 ms doubling to 10 s.
  setTimeout(connect, delay * (0.5 + Math.random()));
  delay = Math.min(delay * 2, 10_000);
}

process.on("SIGINT", () => process.exit(0));
connect();
