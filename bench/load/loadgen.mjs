// Load generator of the callback benchmark (bench/callbacks.py runs it; one Node process).
//
// 1. Opens one Socket.IO connection (websocket transport only) per dialog, at most
//    --connect-concurrency at a time, and subscribes each to its own order
//    (`subscribe {order_id, token}`, ack must be ok). Times connect+subscribe for all.
// 2. Prints `CONNECTED {...}` and, with --wait-go, waits for a line on stdin (the
//    orchestrator reads the servers' RSS in between).
// 3. Posts one success callback per order at a fixed offered rate: an open-loop schedule
//    (callback k is due at t0 + k/rate), taken by --senders concurrent senders sharing one
//    keep-alive agent. For each: HTTP answer time, and event latency = POST sent → that
//    order's `payment_update` with order_status "paid" arriving at its dialog.
// 4. Waits up to --drain-ms for missing events, prints `RESULT {...}` and exits.
//
//   node bench/load/loadgen.mjs --url http://127.0.0.1:5000 --orders orders.json \
//     --callback-path /callbacks/stk/TOKEN --dialogs 2000 --rate 100
// orders.json: [{order_id, token, checkout_id, amount, phone?}, ...] (phone: the push's own
// subscriber, 254712345678 when absent)

import { readFileSync } from "node:fs";
import http from "node:http";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const defaults = {
  url: "http://127.0.0.1:5000",
  orders: "",
  "callback-path": "/cb/{order_id}",
  dialogs: 2000,
  posts: 0, // 0: one per dialog
  rate: 100,
  senders: 16,
  "connect-concurrency": 100,
  "ack-timeout-ms": 30000,
  "drain-ms": 10000,
  "wait-go": false,
  tag: "B",
};
const opt = { ...defaults };
for (let i = 2; i < process.argv.length; i++) {
  const key = process.argv[i].replace(/^--/, "");
  if (!(key in defaults)) throw new Error(`unknown option --${key}`);
  if (typeof defaults[key] === "boolean") opt[key] = true;
  else opt[key] = typeof defaults[key] === "number" ? Number(process.argv[++i]) : process.argv[++i];
}

const log = (...args) => process.stderr.write(`[loadgen] ${args.join(" ")}\n`);

function pct(values, p) {
  if (!values.length) return null;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.round((p / 100) * (sorted.length - 1)))];
}

function stats(values) {
  const round = (v) => (v === null ? null : Math.round(v * 100) / 100);
  return {
    n: values.length,
    p50: round(pct(values, 50)),
    p99: round(pct(values, 99)),
    max: round(values.length ? Math.max(...values) : null),
  };
}

const allOrders = JSON.parse(readFileSync(opt.orders, "utf8"));
const N = Math.min(opt.dialogs, allOrders.length);
const orders = allOrders.slice(0, N);
const url = new URL(opt.url);

// ---- 1. dialogs -------------------------------------------------------------------------
const sockets = new Array(N);
const paidAt = new Float64Array(N); // performance.now() of the paid event, 0 = not yet
const indexOf = new Map(orders.map((o, i) => [o.order_id, i]));
let eventsSeen = 0;
let strayEvents = 0;
let disconnects = 0;
let measuring = false;
const connectErrors = {};
const connectTimes = [];

function openDialog(i) {
  const order = orders[i];
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = io(opt.url, {
      transports: ["websocket"],
      forceNew: true,
      reconnection: false,
      timeout: opt["ack-timeout-ms"],
    });
    sockets[i] = socket;
    const fail = (why) => {
      connectErrors[why] = (connectErrors[why] || 0) + 1;
      socket.disconnect();
      resolve(false);
    };
    socket.on("payment_update", (data) => {
      eventsSeen++;
      if (!data || data.order_id !== order.order_id) {
        strayEvents++;
        return;
      }
      if (data.order_status === "paid" && paidAt[i] === 0) paidAt[i] = performance.now();
    });
    socket.on("disconnect", () => {
      if (measuring) disconnects++;
    });
    socket.once("connect_error", (err) => fail(`connect_error: ${err.message}`));
    socket.once("connect", () => {
      socket
        .timeout(opt["ack-timeout-ms"])
        .emit("subscribe", { order_id: order.order_id, token: order.token }, (err, ack) => {
          if (err) return fail("subscribe ack timeout");
          if (!ack || !ack.ok) return fail(`subscribe refused: ${ack?.error?.code ?? "?"}`);
          connectTimes.push(performance.now() - started);
          resolve(true);
        });
    });
  });
}

const connectStart = performance.now();
let next = 0;
let connected = 0;
await Promise.all(
  Array.from({ length: Math.min(opt["connect-concurrency"], N) }, async () => {
    while (next < N) {
      const i = next++;
      if (await openDialog(i)) connected++;
      if (connected && connected % 2000 === 0) log(`${connected}/${N} dialogs subscribed`);
    }
  }),
);
const connectWall = (performance.now() - connectStart) / 1000;
const connectReport = {
  dialogs: N,
  connected,
  connect_errors: connectErrors,
  connect_wall_s: Math.round(connectWall * 1000) / 1000,
  connect_per_dialog_ms: stats(connectTimes),
};
process.stdout.write(`CONNECTED ${JSON.stringify(connectReport)}\n`);
if (opt["wait-go"]) {
  const rl = createInterface({ input: process.stdin });
  await new Promise((resolve) => rl.once("line", resolve));
  rl.close();
}

// ---- 2. callbacks -----------------------------------------------------------------------
const posts = opt.posts > 0 ? Math.min(opt.posts, N) : N;
const targets = Array.from({ length: posts }, (_, k) => Math.floor((k * N) / posts));
const receiptBase = String(opt.tag).replace(/[^A-Za-z0-9]/g, "").slice(0, 8).toUpperCase();
const bodies = targets.map((i, k) => {
  const o = orders[i];
  return Buffer.from(
    JSON.stringify({
      Body: {
        stkCallback: {
          MerchantRequestID: "29115-34620561-1",
          CheckoutRequestID: o.checkout_id,
          ResultCode: 0,
          ResultDesc: "The service request is processed successfully.",
          CallbackMetadata: {
            Item: [
              { Name: "Amount", Value: o.amount },
              { Name: "MpesaReceiptNumber", Value: `R${receiptBase}${k.toString(36).toUpperCase().padStart(6, "0")}` },
              { Name: "Balance" },
              { Name: "TransactionDate", Value: 20191219102115 },
              { Name: "PhoneNumber", Value: Number(o.phone ?? 254712345678) },
            ],
          },
        },
      },
    }),
  );
});
const paths = targets.map((i) => opt["callback-path"].replace("{order_id}", encodeURIComponent(orders[i].order_id)));
// fifo: every keep-alive socket stays busy, none idles into the server's keep-alive timeout
// (a request racing the server closing an idle socket would be an ECONNRESET of ours).
const agent = new http.Agent({ keepAlive: true, maxSockets: opt.senders, scheduling: "fifo" });
const sentAt = new Float64Array(posts);
const answeredAt = new Float64Array(posts);
const lateness = [];
const httpErrors = {};

function post(k) {
  return new Promise((resolve) => {
    const body = bodies[k];
    sentAt[k] = performance.now();
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method: "POST",
        path: paths[k],
        agent,
        headers: { "Content-Type": "application/json", "Content-Length": body.length },
      },
      (res) => {
        res.resume();
        res.on("end", () => {
          if (res.statusCode >= 200 && res.statusCode < 300) answeredAt[k] = performance.now();
          else httpErrors[`HTTP ${res.statusCode}`] = (httpErrors[`HTTP ${res.statusCode}`] || 0) + 1;
          resolve();
        });
      },
    );
    req.setTimeout(30000, () => req.destroy(new Error("timeout")));
    req.on("error", (err) => {
      httpErrors[err.message] = (httpErrors[err.message] || 0) + 1;
      resolve();
    });
    req.end(body);
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
measuring = true;
const interval = 1000 / opt.rate;
const t0 = performance.now() + 50;
let nextPost = 0;
await Promise.all(
  Array.from({ length: opt.senders }, async () => {
    while (nextPost < posts) {
      const k = nextPost++;
      const due = t0 + k * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      lateness.push(Math.max(0, performance.now() - due));
      await post(k);
    }
  }),
);
const sendEnd = performance.now();

// ---- 3. drain and report ----------------------------------------------------------------
const missing = () => targets.reduce((n, i) => n + (paidAt[i] === 0 ? 1 : 0), 0);
const drainUntil = performance.now() + opt["drain-ms"];
while (missing() > 0 && performance.now() < drainUntil) await sleep(20);
measuring = false;

const answers = [];
const events = [];
let lastAnswer = t0;
for (let k = 0; k < posts; k++) {
  if (answeredAt[k] > 0) {
    answers.push(answeredAt[k] - sentAt[k]);
    if (answeredAt[k] > lastAnswer) lastAnswer = answeredAt[k];
  }
  const i = targets[k];
  if (paidAt[i] > 0) events.push(paidAt[i] - sentAt[k]);
}
const elapsed = (lastAnswer - t0) / 1000;
const result = {
  ...connectReport,
  offered_rate: opt.rate,
  posts,
  senders: opt.senders,
  answered_ok: answers.length,
  achieved_rate: elapsed > 0 ? Math.round((answers.length / elapsed) * 10) / 10 : 0,
  send_wall_s: Math.round(sendEnd - t0) / 1000,
  http_errors: httpErrors,
  answer_ms: stats(answers),
  event_ms: stats(events),
  events_missing: missing(),
  events_seen: eventsSeen,
  stray_events: strayEvents,
  disconnects_during: disconnects,
  sender_late_ms: stats(lateness),
};
if (process.env.LOADGEN_DUMP) {
  // every callback's [sent ms after t0, answer latency ms] (-ms: never answered OK)
  const { writeFileSync } = await import("node:fs");
  const rows = Array.from({ length: posts }, (_, k) => [
    Math.round(sentAt[k] - t0),
    Math.round((answeredAt[k] - sentAt[k]) * 10) / 10,
  ]);
  writeFileSync(process.env.LOADGEN_DUMP, JSON.stringify(rows));
}
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
for (const socket of sockets) socket?.disconnect();
agent.destroy();
setTimeout(() => process.exit(0), 200);
