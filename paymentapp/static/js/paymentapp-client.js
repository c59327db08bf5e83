// paymentapp browser client: live status of one order, and starting an M-Pesa payment.
//
// Framework-free ES module. The payment dialog is built on it; merchants can use it on
// their own pages:
//
//   import { PaymentClient } from "https://pay.example.com/static/js/paymentapp-client.js";
//   const client = new PaymentClient({ orderId, token });
//   client.addEventListener("status", (e) => render(e.detail.status));
//   client.addEventListener("connection", (e) => showIndicator(e.detail.state));
//   client.start();
//   await client.pay("0712 345 678");
//
// Delivery: a Socket.IO websocket (room per order). Every (re)connect re-subscribes and
// the ack carries the current snapshot, so an update emitted while we were away is never
// lost. Updates carry the order's `version`; older ones are dropped. When the socket
// cannot connect or stays down for a few seconds, the client polls the status endpoint
// with back-off until the socket is back. While a payment is pending on a live socket,
// the status is still re-checked over HTTP every ~20 s, so the dialog never sits on
// "pending" because one update was lost.

import { io } from "../../vendor/socket.io.esm.min.js";

export const ConnectionState = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline",
});

const DEFAULTS = {
  fallbackAfterMs: 3000, // socket down this long → start polling
  pollMinMs: 2000,
  pollMaxMs: 15000,
  ackTimeoutMs: 5000,
  // While a payment is pending and the socket is live, re-check over HTTP this often:
  // the last resort if an update was lost (a server that died between commit and emit).
  liveRecheckMs: 20000,
  requestTimeoutMs: 15000,
};

// Same rules as paymentapp/phones.py: 07…, 01…, +254…, 254… (spaces, dashes allowed).
// Any Kenyan mobile range passes (numbers are ported between networks, so an Airtel or
// Telkom prefix may still be an M-Pesa line); `networkOf` only drives a gentle hint.
const KENYAN_MOBILE = /^254(7\d{8}|1[01]\d{7})$/;
export const PHONE_EXAMPLE = "0712 345 678";
export const PHONE_FORMATS = ["07…", "01…", "+254…", "254…"];

// The Communications Authority's allocations, by the three digits after 0/254 (inclusive
// ranges); the same table as NETWORK_RANGES in paymentapp/phones.py.
export const NETWORK_RANGES = [
  [700, 729, "Safaricom"],
  [740, 743, "Safaricom"],
  [745, 746, "Safaricom"],
  [748, 748, "Safaricom"],
  [757, 759, "Safaricom"],
  [768, 769, "Safaricom"],
  [790, 799, "Safaricom"],
  [110, 115, "Safaricom"],
  [730, 739, "Airtel"],
  [750, 756, "Airtel"],
  [762, 762, "Airtel"],
  [780, 789, "Airtel"],
  [100, 102, "Airtel"],
  [770, 779, "Telkom"],
];

/** Normalise what a customer typed to `2547XXXXXXXX`, or return null. */
export function normalizePhone(raw) {
  if (typeof raw !== "string") return null;
  let compact = raw.trim().replace(/[\s\-().]/g, "");
  if (compact.startsWith("+")) compact = compact.slice(1);
  if (!/^\d+$/.test(compact)) return null;
  if (compact.startsWith("0") && compact.length === 10) compact = "254" + compact.slice(1);
  else if (compact.length === 9 && "71".includes(compact[0])) compact = "254" + compact;
  return KENYAN_MOBILE.test(compact) ? compact : null;
}

/**
 * The network a number's prefix was allocated to: "Safaricom", "Airtel", "Telkom", or
 * null (not a mobile number, or a range not in the table). A ported number keeps its
 * prefix, so this is a hint, never a reason to refuse.
 */
export function networkOf(phone) {
  const normalized = normalizePhone(typeof phone === "string" ? phone : String(phone ?? ""));
  if (!normalized) return null;
  const prefix = Number(normalized.slice(3, 6));
  const range = NETWORK_RANGES.find(([low, high]) => low <= prefix && prefix <= high);
  return range ? range[2] : null;
}

/** A short human reason why `raw` is not a phone number (yet), or "" when it is one. */
export function phoneProblem(raw) {
  const PHONE_EXAMPLE = "0712\u00a0345\u00a0678"; // never split across lines
  const text = (raw || "").trim();
  if (!text) return `Enter your M-Pesa number, e.g. ${PHONE_EXAMPLE}.`;
  if (normalizePhone(text)) return "";
  if (/[^\d\s\-().+]/.test(text) || text.lastIndexOf("+") > 0) {
    return `Use digits only, e.g. ${PHONE_EXAMPLE}.`;
  }
  let digits = text.replace(/\D/g, "");
  if (digits.startsWith("254")) digits = digits.slice(3);
  else if (digits.startsWith("0")) digits = digits.slice(1);
  if (!/^(7|1[01])/.test(digits)) return "Use a Kenyan mobile number: 07…, 01…, +254… or 254….";
  if (digits.length < 9) return `Too short: a number has 10 digits, e.g. ${PHONE_EXAMPLE}.`;
  return `Too long: a number has 10 digits, e.g. ${PHONE_EXAMPLE}.`;
}

/** `254712345678` → `2547•••••678` (the same masking the server uses). */
export function maskPhone(phone) {
  if (!phone) return phone;
  return phone.slice(0, 4) + "•".repeat(Math.max(0, phone.length - 7)) + phone.slice(-3);
}

/** `1500` → `KES 1,500` (whole shillings). */
export function formatKes(amount) {
  return "KES " + Number(amount || 0).toLocaleString("en-KE", { maximumFractionDigits: 0 });
}

/** An HTTP error from the customer API, in the contract's error shape. */
export class PaymentError extends Error {
  constructor(httpStatus, body, retryAfter) {
    const error = (body && body.error) || {};
    super(error.message || `Request failed (${httpStatus})`);
    this.name = "PaymentError";
    this.httpStatus = httpStatus;
    this.code = error.code || (httpStatus ? "http_" + httpStatus : "network_error");
    this.fields = error.fields || {};
    this.payment = (body && body.payment) || null;
    this.retryAfter = retryAfter || (body && Number(body.retry_after)) || null;
  }
}

/** The paymentapp server that served this module (used when no `baseUrl` is given). */
/**
 * A Socket.IO connection with the project's settings, shared by the payment dialog and
 * the admin dashboard: websocket transport only (any gunicorn worker can take it, no
 * sticky sessions) and quick reconnects.
 */
export function openSocket(url, options = {}) {
  return io(url, {
    transports: ["websocket"],
    reconnectionDelay: 500,
    reconnectionDelayMax: 4000,
    timeout: 8000,
    ...options,
  });
}

export const DEFAULT_BASE_URL = new URL("../../", import.meta.url).href.replace(/\/$/, "");

/**
 * Live status of one order. Events (all `CustomEvent`s):
 * - `status`     {status, previous, source}  a newer snapshot was applied
 * - `connection` {state, previous, polling}  connection state changed
 * - `error`      {code, message}              the token/order was refused (fatal)
 */
export class PaymentClient extends EventTarget {
  constructor({ orderId, token, baseUrl, initialStatus, ...options } = {}) {
    super();
    if (!orderId || !token) throw new Error("PaymentClient needs orderId and token");
    this.orderId = orderId;
    this.token = token;
    this.baseUrl = (baseUrl || DEFAULT_BASE_URL).replace(/\/$/, "");
    this.options = { ...DEFAULTS, ...options };
    this.status = null;
    this.statusSource = null;
    this.state = ConnectionState.CONNECTING;
    this.polling = false;
    this.fatal = null;
    this._socket = null;
    this._fallbackTimer = null;
    this._pollTimer = null;
    this._recheckTimer = null;
    this._pollDelay = this.options.pollMinMs;
    this._everLive = false;
    this._stopped = true;
    this._onVisible = () => {
      if (document.visibilityState === "visible" && this.state !== ConnectionState.LIVE) {
        this.refresh().catch(() => {});
      }
    };
    this._onOffline = () => {
      // The browser knows before the socket's ping timeout does.
      if (this._stopped) return;
      this._setState(ConnectionState.OFFLINE);
      this._armFallback();
    };
    if (initialStatus) this._apply(initialStatus, "initial");
  }

  /** Connect the socket and subscribe; polling takes over if it cannot connect. */
  start() {
    if (!this._stopped) return this;
    this._stopped = false;
    this._setState(ConnectionState.CONNECTING);
    const socket = openSocket(this.baseUrl, { forceNew: true });
    this._socket = socket;
    socket.on("connect", () => this._subscribe());
    socket.on("payment_update", (payload) => {
      if (payload && payload.order_id === this.orderId) this._apply(payload, "event");
    });
    socket.on("disconnect", (reason) => {
      if (this._stopped) return;
      this._setState(ConnectionState.RECONNECTING);
      this._armFallback();
      // A server-side disconnect is not retried by socket.io on its own; wait a little.
      if (reason === "io server disconnect") {
        setTimeout(() => !this._stopped && socket === this._socket && socket.connect(), 2000);
      }
    });
    socket.on("connect_error", () => {
      if (this._stopped) return;
      if (this.state !== ConnectionState.OFFLINE) this._setState(ConnectionState.RECONNECTING);
      this._armFallback();
    });
    this._armFallback();
    document.addEventListener("visibilitychange", this._onVisible);
    window.addEventListener("online", this._onVisible);
    window.addEventListener("offline", this._onOffline);
    return this;
  }

  /** Disconnect and stop polling. */
  stop() {
    this._stopped = true;
    clearTimeout(this._fallbackTimer);
    clearTimeout(this._pollTimer);
    clearTimeout(this._recheckTimer);
    this._fallbackTimer = null;
    this._recheckTimer = null;
    this.polling = false;
    document.removeEventListener("visibilitychange", this._onVisible);
    window.removeEventListener("online", this._onVisible);
    window.removeEventListener("offline", this._onOffline);
    if (this._socket) {
      this._socket.off();
      this._socket.disconnect();
      this._socket = null;
    }
  }

  /** Fetch the status snapshot over HTTP and apply it; resolves to the current status. */
  async refresh() {
    const body = await this._request("GET", `/api/orders/${enc(this.orderId)}/status`);
    this._apply(body, "poll");
    return this.status;
  }

  /**
   * Start an STK Push to `phone`. Resolves to the pending payment (202); rejects with a
   * `PaymentError`: 409 paid/pending (`.payment` is the pending one), 422 bad phone
   * (`.fields.phone`), 429 cooldown (`.retryAfter` seconds), 502 M-Pesa refused.
   */
  async pay(phone) {
    try {
      const payment = await this._request("POST", `/api/orders/${enc(this.orderId)}/payments`, {
        phone,
      });
      // The room gets the update too, but don't wait for it when the socket is down.
      if (this.state !== ConnectionState.LIVE) this.refresh().catch(() => {});
      return payment;
    } catch (err) {
      if (err.httpStatus === 409) this.refresh().catch(() => {});
      throw err;
    }
  }

  // -- internals ------------------------------------------------------------------

  _subscribe() {
    const socket = this._socket;
    socket
      .timeout(this.options.ackTimeoutMs)
      .emit("subscribe", { order_id: this.orderId, token: this.token }, (err, ack) => {
        if (this._stopped || socket !== this._socket) return;
        if (err || !ack) {
          // No answer: treat as down, poll, and try the subscription again.
          this._setState(ConnectionState.RECONNECTING);
          this._armFallback();
          if (socket.connected) setTimeout(() => socket.connected && this._subscribe(), 2000);
          return;
        }
        if (!ack.ok) {
          this._fail(ack.error || { code: "subscribe_refused", message: "Subscription refused." });
          return;
        }
        this._everLive = true;
        this._stopPolling();
        this._setState(ConnectionState.LIVE);
        this._apply(ack.status, "subscribe");
      });
  }

  _apply(snapshot, source) {
    if (!snapshot || snapshot.order_id !== this.orderId) return false;
    const previous = this.status;
    if (previous && !(Number(snapshot.version) > Number(previous.version))) return false;
    this.status = snapshot;
    this.statusSource = source;
    this.dispatchEvent(new CustomEvent("status", { detail: { status: snapshot, previous, source } }));
    this._armRecheck();
    return true;
  }

  /** Live and waiting for a pending payment: schedule one HTTP re-check (see DEFAULTS). */
  _armRecheck() {
    clearTimeout(this._recheckTimer);
    this._recheckTimer = null;
    const pending = this.status && this.status.payment && this.status.payment.status === "pending";
    if (this._stopped || !pending || this.state !== ConnectionState.LIVE) return;
    this._recheckTimer = setTimeout(() => {
      this._recheckTimer = null;
      if (this._stopped || this.state !== ConnectionState.LIVE) return;
      this.refresh()
        .catch(() => {})
        .finally(() => this._recheckTimer || this._armRecheck());
    }, this.options.liveRecheckMs);
  }

  _setState(state) {
    if (state === this.state && this._announcedPolling === this.polling) return;
    const previous = this.state;
    this.state = state;
    this._announcedPolling = this.polling;
    this.dispatchEvent(
      new CustomEvent("connection", { detail: { state, previous, polling: this.polling } }),
    );
    if (state !== previous) this._armRecheck();
  }

  _fail(error) {
    this.fatal = error;
    this.stop();
    this._setState(ConnectionState.OFFLINE);
    this.dispatchEvent(new CustomEvent("error", { detail: error }));
  }

  _armFallback() {
    if (this._stopped || this.polling || this._fallbackTimer) return;
    this._fallbackTimer = setTimeout(() => {
      this._fallbackTimer = null;
      if (!this._stopped && this.state !== ConnectionState.LIVE) this._startPolling();
    }, this.options.fallbackAfterMs);
  }

  _startPolling() {
    this.polling = true;
    this._pollDelay = this.options.pollMinMs;
    this._setState(this.state);
    this._poll();
  }

  _stopPolling() {
    clearTimeout(this._fallbackTimer);
    this._fallbackTimer = null;
    clearTimeout(this._pollTimer);
    this.polling = false;
  }

  async _poll() {
    if (this._stopped || !this.polling) return;
    try {
      await this.refresh();
      if (this.state === ConnectionState.OFFLINE) this._setState(ConnectionState.RECONNECTING);
    } catch (err) {
      if (err.httpStatus === 401 || err.httpStatus === 403 || err.httpStatus === 404) {
        this._fail({ code: err.code, message: err.message });
        return;
      }
      // Neither the socket nor HTTP reaches the server.
      if (this.state !== ConnectionState.LIVE) this._setState(ConnectionState.OFFLINE);
    }
    if (this._stopped || !this.polling) return;
    this._pollTimer = setTimeout(() => this._poll(), this._pollDelay);
    this._pollDelay = Math.min(Math.round(this._pollDelay * 1.5), this.options.pollMaxMs);
  }

  async _request(method, path, json) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.requestTimeoutMs);
    const headers = { "X-Order-Token": this.token, Accept: "application/json" };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.baseUrl + path, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        signal: controller.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch {
      throw new PaymentError(0, {
        error: { code: "network_error", message: "Could not reach the payment server." },
      });
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("Retry-After")) || null;
      throw new PaymentError(response.status, body, retryAfter);
    }
    return body;
  }
}

function enc(value) {
  return encodeURIComponent(value);
}
