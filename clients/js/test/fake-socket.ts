// A stand-in for socket.io-client: tests play the server (connect, ack, push, drop).
type Handler = (...args: any[]) => void;

export interface Sent {
  event: string;
  payload: any;
  /** Answer the emit (an ack callback); `fail()` is the ack timeout. */
  ack(answer: unknown): void;
  fail(): void;
}

export class FakeSocket {
  connected = false;
  closed = false;
  sent: Sent[] = [];
  private handlers = new Map<string, Handler[]>();

  constructor(
    public url: string,
    public options: Record<string, unknown>,
  ) {}

  on(event: string, handler: Handler) {
    this.handlers.set(event, [...(this.handlers.get(event) || []), handler]);
    return this;
  }

  off() {
    this.handlers.clear();
    return this;
  }

  connect() {
    return this;
  }

  disconnect() {
    this.connected = false;
    this.closed = true;
    return this;
  }

  emit(event: string, payload?: unknown) {
    this.sent.push({ event, payload, ack: () => {}, fail: () => {} });
    return this;
  }

  timeout(_ms: number) {
    return {
      emit: (
        event: string,
        payload: unknown,
        callback: (err: Error | null, ack?: unknown) => void,
      ) => {
        this.sent.push({
          event,
          payload,
          ack: (answer) => callback(null, answer),
          fail: () => callback(new Error("operation has timed out")),
        });
      },
    };
  }

  // -- the server's side -------------------------------------------------------------

  fire(event: string, ...args: unknown[]) {
    for (const handler of this.handlers.get(event) || []) handler(...args);
  }

  /** The connection opens (socket.io then fires `connect`). */
  open() {
    this.connected = true;
    this.fire("connect");
  }

  drop(reason = "transport close") {
    this.connected = false;
    this.fire("disconnect", reason);
  }

  push(update: unknown) {
    this.fire("payment_update", update);
  }

  /** What was emitted with this name, oldest first. */
  emitted(event: string): Sent[] {
    return this.sent.filter((s) => s.event === event);
  }
}

export const sockets: FakeSocket[] = [];

export function io(url: string, options: Record<string, unknown>) {
  const socket = new FakeSocket(url, options);
  sockets.push(socket);
  return socket;
}

export function snapshot(orderId: string, version: number, extra: Record<string, unknown> = {}) {
  return {
    order_id: orderId,
    order_number: "ORD-" + orderId.replace(/\D/g, "").padStart(4, "0"),
    order_status: "pending",
    amount: 1450,
    version,
    updated_at: null,
    payment: null,
    ...extra,
  };
}

export function pendingPayment(id = "pay_1") {
  return {
    id,
    status: "pending",
    result_code: null,
    result_desc: null,
    receipt: null,
    amount: 1450,
    phone_masked: "2547•••••678",
    needs_review: false,
    created_at: null,
    paid_at: null,
    retry_at: null,
  };
}
