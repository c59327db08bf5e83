// PaymentClient: the live status of one order (socket first, HTTP polling when it is
// down, a re-check while a payment is pending) and starting a payment.
//
// Delivery: a Socket.IO websocket (a room per order). Every (re)connect re-subscribes (all
// of a connection's orders in one `subscribe_many`) and the ack carries the current
// snapshot, so an update emitted while we were away is never lost. Updates carry the
// order's `version`; older ones are dropped. When the socket cannot connect or stays down
// for a few seconds, the client polls the status endpoint with back-off until the socket
// is back. While a payment is pending on a live socket, the status is still re-checked
// over HTTP every ~20 s, so nothing sits on "pending" because one update was lost.

import { PaymentConnection, type OrderListener } from "./connection.js";
import type { PaymentError } from "./errors.js";
import { orderPath, request, type RequestContext } from "./http.js";
import type { PaymentSnapshot, StatusSnapshot } from "./wire.js";

/** The client's connection states (`state`, and the `connection` event's detail). */
export const ConnectionState = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  OFFLINE: "offline",
} as const);
export type ConnectionState = (typeof ConnectionState)[keyof typeof ConnectionState];

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
    const body = await request<StatusSnapshot>(
      this.http(),
      "GET",
      orderPath(this.orderId, "status"),
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
      const payment = await request<PaymentSnapshot>(
        this.http(),
        "POST",
        orderPath(this.orderId, "payments"),
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

  /** Where this client's HTTP requests go, with its token and timeout. */
  private http(): RequestContext {
    return {
      baseUrl: this.baseUrl,
      token: this.token,
      timeoutMs: this.options.requestTimeoutMs,
    };
  }
}
