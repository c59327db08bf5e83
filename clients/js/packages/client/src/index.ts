// @paymentapp/client: live status of paymentapp orders, and starting an M-Pesa payment.
//
// Framework-free ES module; the hosted payment dialog, the admin dashboard and
// @paymentapp/react are built on it. The server's base URL is always passed in:
//
//   import { PaymentClient } from "@paymentapp/client";
//   const client = new PaymentClient({ baseUrl: "https://pay.example.com", orderId, token });
//   client.addEventListener("status", (e) => render(e.detail.status));
//   client.addEventListener("connection", (e) => showIndicator(e.detail.state));
//   client.start();
//   await client.pay("0712 345 678");
//
// Delivery: a Socket.IO websocket (a room per order). Every (re)connect re-subscribes (all
// of a connection's orders in one `subscribe_many`) and the ack carries the current
// snapshot, so an update emitted while we were away is never lost. Updates carry the
// order's `version`; older ones are dropped. When the socket cannot connect or stays down
// for a few seconds, the client polls the status endpoint with back-off until the socket
// is back. While a payment is pending on a live socket, the status is still re-checked
// over HTTP every ~20 s, so nothing sits on "pending" because one update was lost.
//
// Nothing here touches `window` or `document` until `start()` (safe to import on a server).

import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";

// -- the wire format (docs/realtime.md) ---------------------------------------------------

export type OrderStatusName = "pending" | "paid" | "cancelled";
export type PaymentStatusName =
  | "pending"
  | "completed"
  | "failed"
  | "cancelled"
  | "timeout"
  | (string & {});

/** A payment as the status snapshot carries it. */
export interface PaymentSnapshot {
  id: string;
  /** How it was paid, e.g. `stk` or `paybill` (servers since Paybill). */
  method?: string;
  status: PaymentStatusName;
  result_code: number | null;
  result_desc: string | null;
  receipt: string | null;
  amount: number;
  phone_masked: string | null;
  needs_review: boolean;
  created_at: string | null;
  paid_at: string | null;
  retry_at: string | null;
}

/** `GET /api/orders/<id>/status`, the `subscribe` ack and every `payment_update`. */
export interface StatusSnapshot {
  order_id: string;
  order_number: string;
  order_status: OrderStatusName;
  amount: number;
  version: number;
  updated_at: string | null;
  payment: PaymentSnapshot | null;
  // Servers since Paybill add these:
  amount_paid?: number;
  amount_due?: number;
  expires_at?: string | null;
  /** Every payment attempt, compactly. */
  payments?: Array<{
    id: string;
    method: string;
    status: PaymentStatusName;
    amount: number;
    paid_amount: number | null;
  }>;
}

export interface SocketRefusal {
  code: string;
  message: string;
}

export const ConnectionState = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline",
} as const);
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

// -- phones and money (the twin of paymentapp/phones.py) ----------------------------------

// 07…, 01…, +254…, 254… (spaces, dashes allowed). Any Kenyan mobile range passes (numbers
// are ported between networks, so an Airtel or Telkom prefix may still be an M-Pesa
// line); `networkOf` only drives a gentle hint.
const KENYAN_MOBILE = /^254(7\d{8}|1[01]\d{7})$/;
export const PHONE_EXAMPLE = "0712 345 678";
export const PHONE_FORMATS = ["07…", "01…", "+254…", "254…"];

export type Network = "Safaricom" | "Airtel" | "Telkom";

// The Communications Authority's allocations, by the three digits after 0/254 (inclusive
// ranges); the same table as NETWORK_RANGES in paymentapp/phones.py.
export const NETWORK_RANGES: ReadonlyArray<readonly [number, number, Network]> = [
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
export function normalizePhone(raw: unknown): string | null {
  if (typeof raw !== "string") return null;
  let compact = raw.trim().replace(/[\s\-().]/g, "");
  if (compact.startsWith("+")) compact = compact.slice(1);
  if (!/^\d+$/.test(compact)) return null;
  if (compact.startsWith("0") && compact.length === 10) compact = "254" + compact.slice(1);
  else if (compact.length === 9 && "71".includes(compact[0])) compact = "254" + compact;
  return KENYAN_MOBILE.test(compact) ? compact : null;
}

/**
 * The network a number's prefix was allocated to, or null (not a mobile number, or a
 * range not in the table). A ported number keeps its prefix: a hint, never a refusal.
 */
export function networkOf(phone: unknown): Network | null {
  const normalized = normalizePhone(typeof phone === "string" ? phone : String(phone ?? ""));
  if (!normalized) return null;
  const prefix = Number(normalized.slice(3, 6));
  const range = NETWORK_RANGES.find(([low, high]) => low <= prefix && prefix <= high);
  return range ? range[2] : null;
}

/** A short human reason why `raw` is not a phone number (yet), or "" when it is one. */
export function phoneProblem(raw: string | null | undefined): string {
  const example = "0712\u00a0345\u00a0678"; // never split across lines
  const text = (raw || "").trim();
  if (!text) return `Enter your M-Pesa number, e.g. ${example}.`;
  if (normalizePhone(text)) return "";
  if (/[^\d\s\-().+]/.test(text) || text.lastIndexOf("+") > 0) {
    return `Use digits only, e.g. ${example}.`;
  }
  let digits = text.replace(/\D/g, "");
  if (digits.startsWith("254")) digits = digits.slice(3);
  else if (digits.startsWith("0")) digits = digits.slice(1);
  if (!/^(7|1[01])/.test(digits)) return "Use a Kenyan mobile number: 07…, 01…, +254… or 254….";
  if (digits.length < 9) return `Too short: a number has 10 digits, e.g. ${example}.`;
  return `Too long: a number has 10 digits, e.g. ${example}.`;
}

/** `254712345678` → `2547•••••678` (the same masking the server uses). */
export function maskPhone(phone: string): string {
  if (!phone) return phone;
  return phone.slice(0, 4) + "•".repeat(Math.max(0, phone.length - 7)) + phone.slice(-3);
}

/** `1500` → `KES 1,500` (whole shillings). */
export function formatKes(amount: number | null | undefined): string {
  return "KES " + Number(amount || 0).toLocaleString("en-KE", { maximumFractionDigits: 0 });
}

// -- errors --------------------------------------------------------------------------------

// What a socket refusal would have been over HTTP (docs/api.md), so both read alike.
const REFUSAL_STATUS: Record<string, number> = {
  invalid_payload: 400,
  missing_token: 401,
  token_expired: 401,
  invalid_token: 403,
  order_not_found: 404,
};

/** An error from the customer API (or a refused subscription), in the contract's shape. */
export class PaymentError extends Error {
  /** The HTTP status; 0 when the server could not be reached. */
  httpStatus: number;
  /** The contract's error code: `invalid_token`, `phone_busy`, `network_error`, … */
  code: string;
  /** Field errors of a 422, e.g. `{phone: "…"}`. */
  fields: Record<string, string>;
  /** The pending or completed payment a 409 is about. */
  payment: PaymentSnapshot | null;
  /** Seconds to wait before trying again (429). */
  retryAfter: number | null;

  constructor(httpStatus: number, body?: unknown, retryAfter?: number | null) {
    const data = (body && typeof body === "object" ? body : {}) as {
      error?: { code?: string; message?: string; fields?: Record<string, string> };
      payment?: PaymentSnapshot;
      retry_after?: number;
    };
    const error = data.error || {};
    super(error.message || `Request failed (${httpStatus})`);
    this.name = "PaymentError";
    this.httpStatus = httpStatus;
    this.code = error.code || (httpStatus ? "http_" + httpStatus : "network_error");
    this.fields = error.fields || {};
    this.payment = data.payment || null;
    this.retryAfter = retryAfter || Number(data.retry_after) || null;
  }

  /** A socket ack's refusal `{code, message}` as a PaymentError. */
  static fromRefusal(refusal: SocketRefusal): PaymentError {
    return new PaymentError(REFUSAL_STATUS[refusal.code] ?? 0, { error: refusal });
  }
}

// -- one socket, many orders -------------------------------------------------------------

export type SocketConnectOptions = Partial<ManagerOptions & SocketOptions>;

/**
 * A Socket.IO connection with the project's settings, shared by the payment dialog and
 * the admin dashboard: websocket transport only (any gunicorn worker can take it, no
 * sticky sessions) and quick reconnects.
 */
export function openSocket(url: string, options: SocketConnectOptions = {}): Socket {
  return io(url, {
    transports: ["websocket"],
    reconnectionDelay: 500,
    reconnectionDelayMax: 4000,
    timeout: 8000,
    ...options,
  });
}

/** What a connection tells each client watching an order. */
export interface OrderListener {
  /** The subscription is acknowledged: updates for the order arrive live. */
  live(): void;
  /** A snapshot from the `subscribe` ack or a `payment_update` (any version). */
  snapshot(status: StatusSnapshot, source: "subscribe" | "event"): void;
  /** The socket is down, or the subscription went unanswered (it is retried). */
  down(): void;
  /** The server refused the order or its token: fatal for this subscription. */
  refused(error: PaymentError): void;
}

export interface PaymentConnectionOptions {
  /** The paymentapp server, e.g. `https://pay.example.com` ("" is this page's origin). */
  baseUrl: string;
  /** Passed to socket.io-client's `io()`. */
  socketOptions?: SocketConnectOptions;
  /** A subscribe with no answer this long counts as lost and is retried. */
  ackTimeoutMs?: number;
  /** Disconnect this long after the last order stopped being watched. */
  idleCloseMs?: number;
}

interface Watch {
  orderId: string;
  token: string;
  listeners: Set<OrderListener>;
  live: boolean;
  last: StatusSnapshot | null;
}

type SubscribeResult = {
  order_id?: string;
  ok: boolean;
  status?: StatusSnapshot;
  error?: SocketRefusal;
};

// Refusals that retrying cannot fix; anything else (rate_limited, too_many_subscriptions,
// internal_error, no answer) is retried while the clients poll.
const FATAL_REFUSALS = new Set(Object.keys(REFUSAL_STATUS));
const RETRY_SUBSCRIBE_MS = 2000;
const BATCH = 50;

/**
 * One Socket.IO connection to one paymentapp server, shared by every client watching an
 * order there. Subscriptions are reference-counted (ten watchers of one order make one
 * subscription); the ones made in the same tick, and all of them after a reconnect, go
 * out as one `subscribe_many`. Releasing the last watcher of an order unsubscribes a
 * tick later, so an unmount followed by a mount (React StrictMode) subscribes once. The
 * socket opens with the first watch and closes `idleCloseMs` after the last.
 *
 * Event `state` {state}: `connecting | live | reconnecting` of the socket itself.
 */
export class PaymentConnection extends EventTarget {
  readonly baseUrl: string;
  state: "idle" | "connecting" | "live" | "reconnecting" = "idle";
  /** The socket.io-client socket while open (diagnostics; don't emit on it). */
  socket: Socket | null = null;
  private options: Required<Omit<PaymentConnectionOptions, "baseUrl">>;
  private watches = new Map<string, Watch>();
  private queued = new Set<string>();
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private releaseTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private batching = true; // false once a server answered `unknown_event` to subscribe_many

  constructor({ baseUrl, ...options }: PaymentConnectionOptions) {
    super();
    if (typeof baseUrl !== "string") {
      throw new Error("PaymentConnection needs baseUrl, the paymentapp server's URL");
    }
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.options = { socketOptions: {}, ackTimeoutMs: 5000, idleCloseMs: 1000, ...options };
  }

  /** Watch an order; returns the function that stops watching it. */
  watch(orderId: string, token: string, listener: OrderListener): () => void {
    clearTimeout(this.releaseTimers.get(orderId));
    this.releaseTimers.delete(orderId);
    clearTimeout(this.idleTimer ?? undefined);
    this.idleTimer = null;
    let watch = this.watches.get(orderId);
    if (!watch) {
      watch = { orderId, token, listeners: new Set(), live: false, last: null };
      this.watches.set(orderId, watch);
      this.queue(orderId);
    }
    watch.listeners.add(listener);
    this.open();
    if (watch.live) {
      listener.live();
      if (watch.last) listener.snapshot(watch.last, "subscribe");
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(orderId, listener);
    };
  }

  /** Disconnect now and forget every watch (their clients are told `down`). */
  close(): void {
    const watches = [...this.watches.values()];
    this.watches.clear();
    this.queued.clear();
    for (const timer of this.releaseTimers.values()) clearTimeout(timer);
    this.releaseTimers.clear();
    clearTimeout(this.flushTimer ?? undefined);
    clearTimeout(this.idleTimer ?? undefined);
    this.flushTimer = this.idleTimer = null;
    if (this.socket) {
      this.socket.off();
      this.socket.disconnect();
      this.socket = null;
    }
    this.setState("idle");
    for (const watch of watches) for (const listener of watch.listeners) listener.down();
  }

  /** Orders being watched (diagnostics and tests). */
  get orderIds(): string[] {
    return [...this.watches.keys()];
  }

  // -- internals ---------------------------------------------------------------------

  private release(orderId: string, listener: OrderListener): void {
    const watch = this.watches.get(orderId);
    if (!watch) return;
    watch.listeners.delete(listener);
    if (watch.listeners.size || this.releaseTimers.has(orderId)) return;
    // A tick later: an unmount and a mount in the same commit keep the subscription.
    this.releaseTimers.set(
      orderId,
      setTimeout(() => {
        this.releaseTimers.delete(orderId);
        if (watch.listeners.size || this.watches.get(orderId) !== watch) return;
        this.watches.delete(orderId);
        this.queued.delete(orderId);
        if (watch.live && this.socket?.connected) {
          this.socket.emit("unsubscribe", { order_id: orderId });
        }
        if (!this.watches.size) this.closeWhenIdle();
      }, 0),
    );
  }

  private closeWhenIdle(): void {
    clearTimeout(this.idleTimer ?? undefined);
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (!this.watches.size) this.close();
    }, this.options.idleCloseMs);
  }

  private open(): void {
    if (this.socket) return;
    this.setState("connecting");
    // forceNew: this connection owns its socket.io Manager (closing it closes the socket).
    const socket = openSocket(this.baseUrl, { forceNew: true, ...this.options.socketOptions });
    this.socket = socket;
    socket.on("connect", () => {
      for (const orderId of this.watches.keys()) this.queued.add(orderId);
      this.flush();
    });
    socket.on("payment_update", (payload: StatusSnapshot) => {
      const watch = payload && this.watches.get(payload.order_id);
      if (!watch) return;
      if (!watch.last || payload.version > watch.last.version) watch.last = payload;
      for (const listener of [...watch.listeners]) listener.snapshot(payload, "event");
    });
    socket.on("disconnect", (reason: string) => {
      this.down();
      // A server-side disconnect is not retried by socket.io on its own; wait a little.
      if (reason === "io server disconnect") {
        setTimeout(() => socket === this.socket && socket.connect(), RETRY_SUBSCRIBE_MS);
      }
    });
    socket.on("connect_error", () => this.down());
  }

  private down(): void {
    this.setState("reconnecting");
    for (const watch of this.watches.values()) {
      watch.live = false;
      for (const listener of [...watch.listeners]) listener.down();
    }
  }

  private queue(orderId: string): void {
    this.queued.add(orderId);
    if (this.flushTimer === null) this.flushTimer = setTimeout(() => this.flush(), 0);
  }

  private flush(): void {
    clearTimeout(this.flushTimer ?? undefined);
    this.flushTimer = null;
    const socket = this.socket;
    if (!socket?.connected) return; // `connect` subscribes everything
    const batch = [...this.queued]
      .map((orderId) => this.watches.get(orderId))
      .filter((watch): watch is Watch => Boolean(watch));
    this.queued.clear();
    if (!batch.length) return;
    if (batch.length === 1 || !this.batching) {
      for (const watch of batch) this.subscribe(socket, watch);
      return;
    }
    // At most BATCH orders a call: well inside the server's 16 KiB message limit.
    for (let i = 0; i < batch.length; i += BATCH)
      this.subscribeMany(socket, batch.slice(i, i + BATCH));
  }

  private subscribe(socket: Socket, watch: Watch): void {
    const payload = { order_id: watch.orderId, token: watch.token };
    socket
      .timeout(this.options.ackTimeoutMs)
      .emit("subscribe", payload, (err: Error | null, ack?: SubscribeResult) => {
        if (socket === this.socket) this.settle(socket, watch, err ? undefined : ack);
      });
  }

  private subscribeMany(socket: Socket, batch: Watch[]): void {
    const orders = batch.map(({ orderId, token }) => ({ order_id: orderId, token }));
    type Ack = { ok: boolean; results?: SubscribeResult[]; error?: SocketRefusal };
    socket
      .timeout(this.options.ackTimeoutMs)
      .emit("subscribe_many", orders, (err: Error | null, ack?: Ack) => {
        if (socket !== this.socket) return;
        if (!err && ack && !ack.ok && ack.error?.code === "unknown_event") {
          this.batching = false; // a server without subscribe_many: one subscribe per order
          batch.forEach((watch) => this.subscribe(socket, watch));
          return;
        }
        batch.forEach((watch, i) => {
          const result = err || !ack ? undefined : ack.ok ? ack.results?.[i] : ack;
          this.settle(socket, watch, result);
        });
      });
  }

  /** Apply one order's subscribe answer (undefined: none came in time). */
  private settle(socket: Socket, watch: Watch, result: SubscribeResult | undefined): void {
    if (this.watches.get(watch.orderId) !== watch) return; // released meanwhile
    if (result?.ok && result.status) {
      watch.live = true;
      if (this.state !== "live") this.setState("live");
      const status = result.status;
      if (!watch.last || status.version > watch.last.version) watch.last = status;
      for (const listener of [...watch.listeners]) {
        listener.live();
        listener.snapshot(status, "subscribe");
      }
      return;
    }
    const refusal = result?.error;
    if (refusal && FATAL_REFUSALS.has(refusal.code)) {
      this.watches.delete(watch.orderId);
      const error = PaymentError.fromRefusal(refusal);
      for (const listener of [...watch.listeners]) listener.refused(error);
      if (!this.watches.size) this.closeWhenIdle();
      return;
    }
    // No answer, rate limited, too many rooms, a server error: poll meanwhile, retry.
    watch.live = false;
    for (const listener of [...watch.listeners]) listener.down();
    const full = refusal?.code === "too_many_subscriptions";
    setTimeout(
      () => {
        if (
          socket === this.socket &&
          socket.connected &&
          this.watches.get(watch.orderId) === watch
        ) {
          this.queue(watch.orderId);
        }
      },
      full ? 8 * RETRY_SUBSCRIBE_MS : RETRY_SUBSCRIBE_MS,
    );
  }

  private setState(state: PaymentConnection["state"]): void {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }
}

// -- one order -----------------------------------------------------------------------------

export interface PaymentClientOptions {
  orderId: string;
  token: string;
  /** The paymentapp server (required unless `connection` is given; "" is this origin). */
  baseUrl?: string;
  /** A shared connection (one socket for many clients); default: a private one. */
  connection?: PaymentConnection;
  /** A snapshot the page already has (e.g. rendered by the server). */
  initialStatus?: StatusSnapshot | null;
  /** Socket down this long → poll the status endpoint. */
  fallbackAfterMs?: number;
  pollMinMs?: number;
  pollMaxMs?: number;
  /** While a payment is pending on a live socket, re-check over HTTP this often. */
  liveRecheckMs?: number;
  requestTimeoutMs?: number;
  ackTimeoutMs?: number;
}

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

export type StatusSource = "initial" | "subscribe" | "event" | "poll";

export interface StatusEventDetail {
  status: StatusSnapshot;
  previous: StatusSnapshot | null;
  source: StatusSource;
}

export interface ConnectionEventDetail {
  state: ConnectionState;
  previous: ConnectionState;
  polling: boolean;
}

/**
 * Live status of one order. Events (all `CustomEvent`s):
 * - `status`     {status, previous, source}  a newer snapshot was applied
 * - `connection` {state, previous, polling}  connection state changed
 * - `error`      PaymentError                 the token/order was refused (fatal)
 */
export class PaymentClient extends EventTarget {
  readonly orderId: string;
  readonly token: string;
  readonly baseUrl: string;
  options: typeof DEFAULTS;
  /** The newest snapshot (highest `version`), or null before the first. */
  status: StatusSnapshot | null = null;
  statusSource: StatusSource | null = null;
  state: ConnectionState = ConnectionState.CONNECTING;
  /** Whether the HTTP fallback is running. */
  polling = false;
  /** Why the server refused this order or token (the client has stopped). */
  fatal: PaymentError | null = null;

  private shared: PaymentConnection | null;
  private connection: PaymentConnection | null = null;
  private release: (() => void) | null = null;
  private fallbackTimer: ReturnType<typeof setTimeout> | null = null;
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private recheckTimer: ReturnType<typeof setTimeout> | null = null;
  private pollDelay: number;
  private stopped = true;
  private announcedPolling: boolean | undefined;
  private listener: OrderListener;

  constructor({
    orderId,
    token,
    baseUrl,
    connection,
    initialStatus,
    ...options
  }: PaymentClientOptions) {
    super();
    if (!orderId || !token) throw new Error("PaymentClient needs orderId and token");
    const base = connection ? connection.baseUrl : baseUrl;
    if (typeof base !== "string") {
      throw new Error("PaymentClient needs baseUrl, the paymentapp server's URL");
    }
    this.orderId = orderId;
    this.token = token;
    this.baseUrl = base.replace(/\/$/, "");
    this.shared = connection || null;
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
    this.options = { ...DEFAULTS, ...given };
    this.pollDelay = this.options.pollMinMs;
    this.listener = {
      live: () => {
        if (this.stopped) return;
        this.stopPolling();
        this.setState(ConnectionState.LIVE);
      },
      snapshot: (status, source) => {
        if (!this.stopped) this.apply(status, source);
      },
      down: () => {
        if (this.stopped) return;
        if (this.state !== ConnectionState.OFFLINE) this.setState(ConnectionState.RECONNECTING);
        this.armFallback();
      },
      refused: (error) => this.fail(error),
    };
    if (initialStatus) this.apply(initialStatus, "initial");
  }

  /** Connect (or join the shared connection) and subscribe; polling takes over if needed. */
  start(): this {
    if (!this.stopped || this.fatal) return this;
    this.stopped = false;
    this.setState(ConnectionState.CONNECTING);
    this.connection =
      this.shared ||
      new PaymentConnection({ baseUrl: this.baseUrl, ackTimeoutMs: this.options.ackTimeoutMs });
    this.release = this.connection.watch(this.orderId, this.token, this.listener);
    this.armFallback();
    if (typeof document !== "undefined") {
      document.addEventListener("visibilitychange", this.onVisible);
      window.addEventListener("online", this.onVisible);
      window.addEventListener("offline", this.onOffline);
    }
    return this;
  }

  /** Disconnect (or leave the shared connection) and stop polling. */
  stop(): void {
    this.stopped = true;
    this.clearTimers();
    this.polling = false;
    if (typeof document !== "undefined") {
      document.removeEventListener("visibilitychange", this.onVisible);
      window.removeEventListener("online", this.onVisible);
      window.removeEventListener("offline", this.onOffline);
    }
    this.release?.();
    this.release = null;
    if (this.connection && this.connection !== this.shared) this.connection.close();
    this.connection = null;
  }

  /** After a fatal refusal or while offline: forget the error, start again, refresh now. */
  retry(): Promise<StatusSnapshot | null> {
    if (this.fatal) {
      this.fatal = null;
      this.stop();
    }
    this.start();
    return this.refresh().catch((err: PaymentError) => {
      if ([401, 403, 404].includes(err.httpStatus)) this.fail(err);
      return this.status;
    });
  }

  /** Fetch the status snapshot over HTTP and apply it; resolves to the current status. */
  async refresh(): Promise<StatusSnapshot | null> {
    const body = await this.request<StatusSnapshot>(
      "GET",
      `/api/orders/${enc(this.orderId)}/status`,
    );
    this.apply(body, "poll");
    return this.status;
  }

  /**
   * Start an STK Push to `phone`. Resolves to the pending payment (202); rejects with a
   * `PaymentError`: 409 paid/pending (`.payment` is the pending one), 422 bad phone
   * (`.fields.phone`), 429 cooldown (`.retryAfter` seconds), 502 M-Pesa refused.
   */
  async pay(phone: string): Promise<PaymentSnapshot> {
    try {
      const payment = await this.request<PaymentSnapshot>(
        "POST",
        `/api/orders/${enc(this.orderId)}/payments`,
        { phone },
      );
      // The room gets the update too, but don't wait for it when the socket is down.
      if (this.state !== ConnectionState.LIVE) this.refresh().catch(() => {});
      return payment;
    } catch (err) {
      if ((err as PaymentError).httpStatus === 409) this.refresh().catch(() => {});
      throw err;
    }
  }

  // -- internals ---------------------------------------------------------------------

  private onVisible = () => {
    if (document.visibilityState === "visible" && this.state !== ConnectionState.LIVE) {
      this.refresh().catch(() => {});
    }
  };

  private onOffline = () => {
    // The browser knows before the socket's ping timeout does.
    if (this.stopped) return;
    this.setState(ConnectionState.OFFLINE);
    this.armFallback();
  };

  private apply(snapshot: StatusSnapshot, source: StatusSource): boolean {
    if (!snapshot || snapshot.order_id !== this.orderId) return false;
    const previous = this.status;
    if (previous && !(Number(snapshot.version) > Number(previous.version))) return false;
    this.status = snapshot;
    this.statusSource = source;
    this.dispatchEvent(
      new CustomEvent<StatusEventDetail>("status", {
        detail: { status: snapshot, previous, source },
      }),
    );
    this.armRecheck();
    return true;
  }

  /** Live and waiting for a pending payment: schedule one HTTP re-check (see DEFAULTS). */
  private armRecheck(): void {
    clearTimeout(this.recheckTimer ?? undefined);
    this.recheckTimer = null;
    const pending = this.status?.payment?.status === "pending";
    if (this.stopped || !pending || this.state !== ConnectionState.LIVE) return;
    this.recheckTimer = setTimeout(() => {
      this.recheckTimer = null;
      if (this.stopped || this.state !== ConnectionState.LIVE) return;
      this.refresh()
        .catch(() => {})
        .finally(() => this.recheckTimer || this.armRecheck());
    }, this.options.liveRecheckMs);
  }

  private setState(state: ConnectionState): void {
    if (state === this.state && this.announcedPolling === this.polling) return;
    const previous = this.state;
    this.state = state;
    this.announcedPolling = this.polling;
    this.dispatchEvent(
      new CustomEvent<ConnectionEventDetail>("connection", {
        detail: { state, previous, polling: this.polling },
      }),
    );
    if (state !== previous) this.armRecheck();
  }

  private fail(error: PaymentError): void {
    this.fatal = error;
    this.stop();
    this.setState(ConnectionState.OFFLINE);
    this.dispatchEvent(new CustomEvent<PaymentError>("error", { detail: error }));
  }

  private clearTimers(): void {
    clearTimeout(this.fallbackTimer ?? undefined);
    clearTimeout(this.pollTimer);
    clearTimeout(this.recheckTimer ?? undefined);
    this.fallbackTimer = this.recheckTimer = null;
  }

  private armFallback(): void {
    if (this.stopped || this.polling || this.fallbackTimer) return;
    this.fallbackTimer = setTimeout(() => {
      this.fallbackTimer = null;
      if (!this.stopped && this.state !== ConnectionState.LIVE) this.startPolling();
    }, this.options.fallbackAfterMs);
  }

  private startPolling(): void {
    this.polling = true;
    this.pollDelay = this.options.pollMinMs;
    this.setState(this.state);
    void this.poll();
  }

  private stopPolling(): void {
    clearTimeout(this.fallbackTimer ?? undefined);
    this.fallbackTimer = null;
    clearTimeout(this.pollTimer);
    this.polling = false;
  }

  private async poll(): Promise<void> {
    if (this.stopped || !this.polling) return;
    try {
      await this.refresh();
      if (this.state === ConnectionState.OFFLINE) this.setState(ConnectionState.RECONNECTING);
    } catch (err) {
      const error = err as PaymentError;
      if ([401, 403, 404].includes(error.httpStatus)) {
        this.fail(error);
        return;
      }
      // Neither the socket nor HTTP reaches the server.
      if (this.state !== ConnectionState.LIVE) this.setState(ConnectionState.OFFLINE);
    }
    if (this.stopped || !this.polling) return;
    this.pollTimer = setTimeout(() => this.poll(), this.pollDelay);
    this.pollDelay = Math.min(Math.round(this.pollDelay * 1.5), this.options.pollMaxMs);
  }

  private async request<T>(method: string, path: string, json?: unknown): Promise<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.options.requestTimeoutMs);
    const headers: Record<string, string> = {
      "X-Order-Token": this.token,
      Accept: "application/json",
    };
    if (json !== undefined) headers["Content-Type"] = "application/json";
    let response: Response;
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
    let body: unknown = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      const retryAfter = Number(response.headers.get("Retry-After")) || null;
      throw new PaymentError(response.status, body, retryAfter);
    }
    return body as T;
  }
}

function enc(value: string): string {
  return encodeURIComponent(value);
}
