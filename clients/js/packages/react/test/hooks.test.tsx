import { act, cleanup, render, screen } from "@testing-library/react";
import { StrictMode, useEffect } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pendingPayment, snapshot, sockets } from "../../../test/fake-socket";
import {
  PaymentProvider,
  usePaymentSocket,
  usePaymentStatus,
  type PaymentStatus,
} from "../src/index.js";

vi.mock("socket.io-client", () => import("../../../test/fake-socket"));

const BASE = "https://pay.example.com";
const fetchMock = vi.fn();

function json(status: number, body: unknown, headers: Record<string, string> = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", ...headers },
  });
}

async function tick(ms = 0) {
  await act(async () => {
    await vi.advanceTimersByTimeAsync(ms);
  });
}

/** Every committed result, per order, to check what a person could have seen. */
let seen: Array<{ orderId: string; result: PaymentStatus }>;
let latest: Record<string, PaymentStatus>;

function Status({ orderId, token = "tok-" + orderId }: { orderId: string; token?: string }) {
  const result = usePaymentStatus(orderId, token);
  useEffect(() => {
    seen.push({ orderId, result });
    latest[orderId] = result;
  });
  const { status, connection, error } = result;
  return (
    <output data-testid="status">
      {status ? `${status.order_id} v${status.version} ${status.order_status}` : "none"} ·{" "}
      {connection}
      {error ? ` · ${error.code}` : ""}
    </output>
  );
}

function app(children: React.ReactNode, strict = false) {
  const tree = (
    <PaymentProvider
      baseUrl={BASE}
      clientOptions={{ fallbackAfterMs: 3000, liveRecheckMs: 60_000 }}
    >
      {children}
    </PaymentProvider>
  );
  return strict ? <StrictMode>{tree}</StrictMode> : tree;
}

const socket = () => sockets[sockets.length - 1];
const text = () => screen.getByTestId("status").textContent;

/** The socket connects and the server answers the one subscription with `status`. */
async function connectWith(status: unknown) {
  socket().open();
  socket().emitted("subscribe")[0].ack({ ok: true, status });
  await tick();
}

beforeEach(() => {
  vi.useFakeTimers();
  sockets.length = 0;
  seen = [];
  latest = {};
  fetchMock.mockReset();
  fetchMock.mockImplementation(async () => json(503, {}));
  vi.stubGlobal("fetch", fetchMock);
});

afterEach(() => {
  cleanup();
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("usePaymentStatus", () => {
  it("keeps the highest version: older and repeated snapshots never show", async () => {
    render(app(<Status orderId="ord_1" />));
    await tick();
    await connectWith(snapshot("ord_1", 2));
    expect(text()).toBe("ord_1 v2 pending · live");

    act(() => socket().push(snapshot("ord_1", 1, { order_status: "cancelled" })));
    act(() => socket().push(snapshot("ord_1", 4, { order_status: "paid" })));
    act(() => socket().push(snapshot("ord_1", 3)));
    act(() => socket().push(snapshot("ord_1", 4, { order_status: "pending" })));
    expect(text()).toBe("ord_1 v4 paid · live");
    const versions = seen.map((s) => s.result.status?.version ?? 0);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(latest.ord_1.order).toMatchObject({
      id: "ord_1",
      status: "paid",
      amount: 1450,
      version: 4,
    });
  });

  it("subscribes once under StrictMode and leaks nothing on unmount", async () => {
    const view = render(app(<Status orderId="ord_1" />, true));
    await tick();
    expect(sockets).toHaveLength(1);
    socket().open();
    expect(socket().emitted("subscribe")).toHaveLength(1);
    socket()
      .emitted("subscribe")[0]
      .ack({ ok: true, status: snapshot("ord_1", 1) });
    await tick();
    expect(text()).toBe("ord_1 v1 pending · live");
    expect(socket().emitted("unsubscribe")).toHaveLength(0);

    view.unmount();
    await tick();
    expect(
      socket()
        .emitted("unsubscribe")
        .map((s) => s.payload),
    ).toEqual([{ order_id: "ord_1" }]);
    await tick(1000);
    expect(socket().closed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    expect(sockets).toHaveLength(1);
  });

  it("shows nothing of the previous order after a switch", async () => {
    const view = render(app(<Status orderId="ord_1" />));
    await tick();
    await connectWith(snapshot("ord_1", 5, { order_status: "paid" }));
    expect(text()).toBe("ord_1 v5 paid · live");

    seen = [];
    view.rerender(app(<Status orderId="ord_2" />));
    expect(text()).toBe("none · connecting");
    await tick();
    const [, second] = socket().emitted("subscribe");
    expect(second.payload).toEqual({ order_id: "ord_2", token: "tok-ord_2" });
    expect(
      socket()
        .emitted("unsubscribe")
        .map((s) => s.payload),
    ).toEqual([{ order_id: "ord_1" }]);
    // The old order's late news reaches no one.
    act(() => socket().push(snapshot("ord_1", 6, { order_status: "cancelled" })));
    second.ack({ ok: true, status: snapshot("ord_2", 1) });
    await tick();
    expect(text()).toBe("ord_2 v1 pending · live");
    expect(seen.every((s) => !s.result.status || s.result.status.order_id === "ord_2")).toBe(true);
    expect(sockets).toHaveLength(1);
  });

  it("unmounting mid-payment stops everything, and a late answer changes nothing", async () => {
    let answer!: (response: Response) => void;
    fetchMock.mockImplementation(() => new Promise<Response>((resolve) => (answer = resolve)));
    const errors = vi.spyOn(console, "error");
    const view = render(app(<Status orderId="ord_1" />));
    await tick();
    await connectWith(snapshot("ord_1", 1));
    const paying = latest.ord_1.pay("0712345678");
    view.unmount();
    answer(
      json(422, {
        error: { code: "invalid_phone", message: "Bad number.", fields: { phone: "Bad number." } },
      }),
    );
    await expect(paying).rejects.toMatchObject({ httpStatus: 422 });
    await tick(60_000);
    expect(socket().closed).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
    expect(errors).not.toHaveBeenCalled();
  });

  it("after a reconnect resubscribes every order in one call and catches up", async () => {
    render(
      app(
        <>
          <Status orderId="ord_1" />
          <Status orderId="ord_2" />
          <Status orderId="ord_3" />
        </>,
      ),
    );
    await tick();
    socket().open();
    const [first] = socket().emitted("subscribe_many");
    expect(first.payload.map((p: { order_id: string }) => p.order_id)).toEqual([
      "ord_1",
      "ord_2",
      "ord_3",
    ]);
    first.ack({
      ok: true,
      results: [1, 2, 3].map((n) => ({
        order_id: `ord_${n}`,
        ok: true,
        status: snapshot(`ord_${n}`, 1),
      })),
    });
    await tick();
    expect(Object.values(latest).map((r) => r.connection)).toEqual(["live", "live", "live"]);

    act(() => socket().drop());
    expect(Object.values(latest).map((r) => r.connection)).toEqual([
      "reconnecting",
      "reconnecting",
      "reconnecting",
    ]);
    act(() => socket().open());
    const resubscribes = socket().emitted("subscribe_many");
    expect(resubscribes).toHaveLength(2);
    expect(socket().emitted("subscribe")).toHaveLength(0);
    resubscribes[1].ack({
      ok: true,
      results: [
        { order_id: "ord_1", ok: true, status: snapshot("ord_1", 1) },
        { order_id: "ord_2", ok: true, status: snapshot("ord_2", 3, { order_status: "paid" }) },
        {
          order_id: "ord_3",
          ok: true,
          status: snapshot("ord_3", 2, { payment: pendingPayment() }),
        },
      ],
    });
    await tick();
    expect(latest.ord_2.order?.status).toBe("paid");
    expect(latest.ord_3.payment?.status).toBe("pending");
    expect(Object.values(latest).map((r) => r.connection)).toEqual(["live", "live", "live"]);
    expect(sockets).toHaveLength(1);
  });

  it("polls over HTTP while the socket is down, with back-off, and stops once live", async () => {
    fetchMock.mockImplementation(async () =>
      json(200, snapshot("ord_1", 2, { payment: pendingPayment() })),
    );
    render(app(<Status orderId="ord_1" />));
    await tick(2999);
    expect(fetchMock).not.toHaveBeenCalled();
    await tick(1);
    expect(fetchMock).toHaveBeenCalledTimes(1);
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe(`${BASE}/api/orders/ord_1/status`);
    expect(init.headers["X-Order-Token"]).toBe("tok-ord_1");
    expect(latest.ord_1).toMatchObject({ polling: true, connection: "connecting" });
    expect(text()).toBe("ord_1 v2 pending · connecting");
    await tick(2000);
    expect(fetchMock).toHaveBeenCalledTimes(2);
    await tick(2999);
    expect(fetchMock).toHaveBeenCalledTimes(2); // then every 3 s, 4.5 s, … up to 15 s

    fetchMock.mockImplementation(async () => {
      throw new TypeError("Failed to fetch");
    });
    await tick(1);
    expect(latest.ord_1.connection).toBe("offline");

    await connectWith(snapshot("ord_1", 3, { order_status: "paid" }));
    expect(latest.ord_1).toMatchObject({ polling: false, connection: "live" });
    const calls = fetchMock.mock.calls.length;
    await tick(30_000);
    expect(fetchMock.mock.calls.length).toBe(calls);
  });

  it("maps refusals and API errors to PaymentError, and retry() starts again", async () => {
    fetchMock.mockImplementation(async () =>
      json(
        429,
        { error: { code: "phone_busy", message: "A prompt was just sent.", fields: {} } },
        { "Retry-After": "7" },
      ),
    );
    render(app(<Status orderId="ord_1" />));
    await tick();
    await connectWith(snapshot("ord_1", 1));
    let thrown: unknown;
    await act(async () => {
      thrown = await latest.ord_1.pay("0712345678").catch((e: unknown) => e);
    });
    expect(thrown).toBe(latest.ord_1.error);
    expect(latest.ord_1.error).toMatchObject({
      name: "PaymentError",
      httpStatus: 429,
      code: "phone_busy",
      retryAfter: 7,
    });
    const [, init] = fetchMock.mock.calls[0];
    expect(JSON.parse(init.body)).toEqual({ phone: "0712345678" });

    fetchMock.mockImplementation(async () =>
      json(422, {
        error: {
          code: "validation_error",
          message: "Check the phone.",
          fields: { phone: "Use 07…" },
        },
      }),
    );
    await act(async () => {
      await latest.ord_1.pay("0812").catch(() => {});
    });
    expect(latest.ord_1.error).toMatchObject({ httpStatus: 422, fields: { phone: "Use 07…" } });
    fetchMock.mockImplementation(async () => {
      throw new TypeError("Failed to fetch");
    });
    await act(async () => {
      await latest.ord_1.pay("0712345678").catch(() => {});
    });
    expect(latest.ord_1.error).toMatchObject({ httpStatus: 0, code: "network_error" });

    // The token is refused on the next (re)subscribe: fatal, shown as a 403.
    act(() => socket().drop());
    act(() => socket().open());
    socket()
      .emitted("subscribe")[1]
      .ack({
        ok: false,
        error: { code: "invalid_token", message: "This token is not valid for this order." },
      });
    await tick();
    expect(latest.ord_1.error).toMatchObject({
      httpStatus: 403,
      code: "invalid_token",
      message: "This token is not valid for this order.",
    });
    expect(latest.ord_1.connection).toBe("offline");
    await tick(60_000);
    expect(socket().emitted("subscribe")).toHaveLength(2); // no retry loop on a refusal

    fetchMock.mockImplementation(async () => json(200, snapshot("ord_1", 2)));
    expect(socket().closed).toBe(true); // nothing left to watch on it
    act(() => latest.ord_1.retry());
    expect(latest.ord_1.error).toBeNull();
    await tick();
    expect(latest.ord_1.status?.version).toBe(2); // read over HTTP at once
    expect(sockets).toHaveLength(2);
    act(() => socket().open());
    expect(
      socket()
        .emitted("subscribe")
        .map((s) => s.payload),
    ).toEqual([{ order_id: "ord_1", token: "tok-ord_1" }]);
  });

  it("is idle without an order", async () => {
    render(app(<Status orderId="" />));
    await tick(10_000);
    expect(sockets).toHaveLength(0);
    expect(fetchMock).not.toHaveBeenCalled();
    await expect(latest[""].pay("0712345678")).rejects.toThrow("no order");
  });
});

describe("usePaymentSocket", () => {
  function Badge() {
    const { state } = usePaymentSocket();
    return <span data-testid="badge">{state}</span>;
  }

  it("ten components watching ten orders share one socket", async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `ord_${i + 1}`);
    render(
      app(
        <>
          <Badge />
          {ids.map((id) => (
            <Status key={id} orderId={id} />
          ))}
          <Status orderId="ord_1" />
        </>,
        true,
      ),
    );
    await tick();
    expect(screen.getByTestId("badge").textContent).toBe("connecting");
    expect(sockets).toHaveLength(1);
    expect(sockets[0].url).toBe(BASE);
    expect(sockets[0].options).toMatchObject({ transports: ["websocket"], forceNew: true });
    act(() => socket().open());
    const calls = socket().sent;
    expect(calls.map((c) => c.event)).toEqual(["subscribe_many"]);
    expect(calls[0].payload.map((p: { order_id: string }) => p.order_id)).toEqual(ids);
    calls[0].ack({
      ok: true,
      results: ids.map((id) => ({ order_id: id, ok: true, status: snapshot(id, 1) })),
    });
    await tick();
    expect(screen.getByTestId("badge").textContent).toBe("live");
    expect(screen.getAllByTestId("status").map((el) => el.textContent)).toContain(
      "ord_10 v1 pending · live",
    );
  });

  it("needs a provider", () => {
    vi.spyOn(console, "error").mockImplementation(() => {});
    expect(() => render(<Badge />)).toThrow("PaymentProvider");
  });
});
