// The Node peer of the callback benchmark: Express + socket.io + pg, one process.
//
// Same socket protocol as paymentapp (websocket only): `subscribe {order_id, token}` checks
// the token (HMAC-SHA256 of the order id under BENCH_SECRET, base64url), joins
// `order:<id>` and acks `{ok: true, status: {order_id, order_status, version}}` read from
// the database. `POST /callbacks/stk/<token>` takes a Daraja STK callback body and, in
// ONE transaction: stores the raw body in callback_records, locks the order by
// CheckoutRequestID (SELECT ... FOR UPDATE), marks it paid (version + 1), commits; then
// emits `payment_update {order_id, order_status: "paid", version}` and answers Daraja.
//
//   PORT=5100 DATABASE_URL=postgresql://postgres@127.0.0.1:5432/db BENCH_SECRET=s \
//   CALLBACK_TOKEN=t node bench/peers/node-pg/server.mjs
// Tables: bench/peers/node-pg/schema.sql (bench/callbacks.py creates and seeds them).
//
// PEER_LOG=1: the lines paymentapp writes at LOG_LEVEL=INFO with its access log on, to
// stdout, one write each: per paid callback `payment.completed` and `order.paid` (in the
// transaction), `callback.applied` (after the commit) and an access line per request in
// gunicorn's format (after the answer). Without it the peer writes nothing per request.

import { createHmac, timingSafeEqual } from "node:crypto";
import http from "node:http";
import express from "express";
import pg from "pg";
import { Server } from "socket.io";

const PORT = Number(process.env.PORT || 5100);
const SECRET = process.env.BENCH_SECRET || "bench-secret";
const CALLBACK_TOKEN = process.env.CALLBACK_TOKEN || "bench-callback-token-0123";
const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.PG_POOL || 10),
});
const ACCEPTED = { ResultCode: 0, ResultDesc: "Accepted" };
const PEER_LOG = process.env.PEER_LOG === "1";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

function logLine(text) {
  process.stdout.write(`${text}\n`); // a pipe: a synchronous write on Linux, as Python's
}

function appLine(logger, message) {
  const at = `${new Date().toISOString().slice(0, 19)}Z`;
  logLine(`${at} INFO ${logger} [pid ${process.pid}] ${message}`);
}

function maskPhone(phone) {
  const digits = String(phone ?? "");
  return digits.length > 7 ? `${digits.slice(0, 4)}•••••${digits.slice(-3)}` : "";
}

// The three lines paymentapp logs for one paid STK callback (paymentapp/payments/states.py,
// paymentapp/callbacks/stk.py); the order id stands in for the order number.
function paidLines(orderId, recordId, items) {
  const receipt = String(items.MpesaReceiptNumber ?? "");
  const ids = `order=${orderId} payment=pay_${orderId}`;
  const phone = `phone=${maskPhone(items.PhoneNumber)}`;
  const states = "paymentapp.payments.states";
  return {
    inTransaction() {
      appLine(
        states,
        `order ${orderId} paid ${items.Amount} KES, receipt ${receipt} via callback | event=payment.completed ${ids} receipt=${receipt} amount=${items.Amount} amount_from=callback source=callback ${phone}`,
      );
      appLine(
        states,
        `order ${orderId} marked paid, receipt ${receipt} | event=order.paid ${ids} receipt=${receipt} amount=${items.Amount} source=callback ${phone}`,
      );
    },
    afterCommit() {
      appLine(
        "paymentapp.callbacks.stk",
        `callback for order ${orderId}: applied, payment completed | event=callback.applied ${ids} record=${recordId} result_code=0 receipt=${receipt} ${phone}`,
      );
    },
  };
}

// gunicorn's access line: `127.0.0.1 - - [02/Dec/2026:16:55:12 +0000] "POST /callbacks/stk/<token> HTTP/1.1" 200 149 "-" "-"`
function accessLog(req, res, next) {
  res.on("finish", () => {
    const d = new Date();
    const two = (n) => String(n).padStart(2, "0");
    const at = `${two(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} +0000`;
    const path = req.originalUrl.replace(/(\/callbacks\/stk\/)[^/?]+/, "$1<token>");
    const size = res.getHeader("content-length") ?? "-";
    const agent = req.headers["user-agent"] ?? "-";
    logLine(`${req.socket.remoteAddress} - - [${at}] "${req.method} ${path} HTTP/${req.httpVersion}" ${res.statusCode} ${size} "-" "${agent}"`);
  });
  next();
}

function tokenFor(orderId) {
  return createHmac("sha256", SECRET).update(orderId).digest("base64url");
}

function tokenOk(orderId, token) {
  const want = Buffer.from(tokenFor(orderId));
  const got = Buffer.from(String(token));
  return want.length === got.length && timingSafeEqual(want, got);
}

const app = express();
app.disable("x-powered-by");
app.disable("etag");
if (PEER_LOG) app.use(accessLog);
app.get("/healthz", async (_req, res) => {
  await pool.query("SELECT 1");
  res.json({ status: "ok" });
});

app.post(
  "/callbacks/stk/:token",
  express.text({ type: () => true, limit: "16kb" }),
  async (req, res) => {
    if (req.params.token !== CALLBACK_TOKEN) {
      res.status(404).json({ error: { code: "not_found" } });
      return;
    }
    const body = typeof req.body === "string" ? req.body : "";
    let cb;
    try {
      cb = JSON.parse(body).Body.stkCallback;
    } catch {
      cb = null;
    }
    const checkoutId = cb && typeof cb.CheckoutRequestID === "string" ? cb.CheckoutRequestID : null;
    const items = {};
    for (const item of cb?.CallbackMetadata?.Item ?? []) items[item.Name] = item.Value;
    const client = await pool.connect();
    let paid = null;
    let lines = null;
    try {
      await client.query("BEGIN");
      const record = await client.query(
        "INSERT INTO callback_records (remote_addr, body, checkout_request_id) VALUES ($1, $2, $3) RETURNING id",
        [req.socket.remoteAddress, body, checkoutId],
      );
      let outcome = "unknown";
      if (checkoutId) {
        const found = await client.query(
          "SELECT id, status, amount, version FROM orders WHERE checkout_request_id = $1 FOR UPDATE",
          [checkoutId],
        );
        const order = found.rows[0];
        if (order && order.status !== "pending") {
          outcome = "duplicate";
        } else if (order && cb.ResultCode === 0 && Number(items.Amount) === order.amount) {
          const updated = await client.query(
            "UPDATE orders SET status = 'paid', version = version + 1, receipt = $2, paid_at = now(), updated_at = now() WHERE id = $1 RETURNING version",
            [order.id, String(items.MpesaReceiptNumber ?? "")],
          );
          paid = { order_id: order.id, order_status: "paid", version: updated.rows[0].version };
          outcome = "applied";
          if (PEER_LOG) {
            lines = paidLines(order.id, record.rows[0].id, items);
            lines.inTransaction();
          }
        } else if (order) {
          outcome = "ignored";
        }
      }
      await client.query("UPDATE callback_records SET outcome = $2 WHERE id = $1", [
        record.rows[0].id,
        outcome,
      ]);
      await client.query("COMMIT");
    } catch (err) {
      await client.query("ROLLBACK").catch(() => {});
      client.release();
      console.error("callback failed:", err);
      res.status(503).json({ error: { code: "unavailable" } });
      return;
    }
    client.release();
    lines?.afterCommit();
    if (paid) io.to(`order:${paid.order_id}`).emit("payment_update", paid);
    res.json(ACCEPTED);
  },
);

const server = http.createServer({ keepAliveTimeout: 5000 }, app);
const io = new Server(server, {
  transports: ["websocket"],
  pingInterval: 20000,
  pingTimeout: 20000,
  maxHttpBufferSize: 16 * 1024,
  serveClient: false,
});

function failure(code, message) {
  return { ok: false, error: { code, message } };
}

io.on("connection", (socket) => {
  socket.on("subscribe", async (data, ack) => {
    if (typeof ack !== "function") return;
    const orderId = data?.order_id;
    if (typeof orderId !== "string" || !orderId || orderId.length > 64) {
      ack(failure("invalid_payload", "'order_id' is required."));
      return;
    }
    if (!tokenOk(orderId, data.token)) {
      ack(failure("invalid_token", "This token is not valid for this order."));
      return;
    }
    socket.join(`order:${orderId}`); // join first, read second (as paymentapp)
    try {
      const { rows } = await pool.query("SELECT status, version FROM orders WHERE id = $1", [orderId]);
      if (!rows.length) {
        socket.leave(`order:${orderId}`);
        ack(failure("order_not_found", "No order with this id."));
        return;
      }
      ack({ ok: true, status: { order_id: orderId, order_status: rows[0].status, version: rows[0].version } });
    } catch (err) {
      console.error("subscribe failed:", err);
      ack(failure("internal_error", "Something went wrong on our side."));
    }
  });
});

server.listen(PORT, "127.0.0.1", () => console.log(`node-pg peer on 127.0.0.1:${PORT} pid ${process.pid}`));
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    io.close();
    pool.end().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 3000).unref();
  });
}
