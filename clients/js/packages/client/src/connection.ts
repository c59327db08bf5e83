// PaymentConnection: one Socket.IO connection to one paymentapp server, shared by every
// client watching an order there (reference-counted, batched subscriptions), and
// `openSocket`, the project's socket settings (also used by the admin dashboard).

import { io, type ManagerOptions, type Socket, type SocketOptions } from "socket.io-client";
import { PaymentError, REFUSAL_STATUS } from "./errors.js";
import type { SocketRefusal, StatusSnapshot } from "./wire.js";

export type SocketConnectOptions = Partial<ManagerOptions & SocketOptions>;

/**
 * A Socket.IO connection with the project's settings, shared by the payment dialog and
 * the admin dashboard: websocket transport only (any gunicorn worker can take it, no
 * sticky sessions) and quick reconnects.
 */
export function openSocket(url: string, options: SocketConnectOptions = {}): Socket {
  const socket = io(url, {
    transports: ["websocket"],
    reconnectionDelay: 500,
    reconnectionDelayMax: 4000,
    timeout: 8000,
    ...options,
  });
  explainRefusal(socket, url);
  return socket;
}

/** What `GET /realtime/origin` answers: may this page's origin open the socket? */
interface OriginAnswer {
  origin: string;
  allowed: boolean;
  setting: string;
}

/**
 * A browser never says why a WebSocket handshake failed, and a refused origin only looks
 * like a server that is down. So when the socket fails before it ever connected, ask the
 * server once whether this page's origin may connect, and if not, say in the console
 * which origin and which server setting (without a socket, clients poll meanwhile).
 */
function explainRefusal(socket: Socket, url: string): void {
  if (typeof fetch !== "function" || typeof location === "undefined") return;
  let asked = false;
  socket.on("connect", () => (asked = true));
  socket.on("connect_error", () => {
    if (asked) return;
    asked = true;
    const server = new URL(url || "/", location.href).origin; // a namespace is a path
    fetch(`${server}/realtime/origin`, { cache: "no-store", credentials: "omit" })
      .then((response) => (response.ok ? (response.json() as Promise<OriginAnswer>) : null))
      .then((answer) => {
        if (answer?.allowed !== false) return;
        console.warn(
          `paymentapp: ${server} refused the live connection (Socket.IO) for this page's ` +
            `origin ${answer.origin}: add it to ${answer.setting} on the server, or open ` +
            `the page at an address it allows.`,
        );
      })
      .catch(() => {}); // no answer: the server is down, not refusing
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
