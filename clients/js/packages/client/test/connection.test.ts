import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { snapshot, sockets } from "../../../test/fake-socket";
import {
  PaymentClient,
  PaymentConnection,
  openSocket,
  type OrderListener,
} from "../src/index.js";

vi.mock("socket.io-client", () => import("../../../test/fake-socket"));

function listener(): OrderListener & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    live: () => calls.push("live"),
    snapshot: (s, source) => calls.push(`${source}:${s.order_id}:v${s.version}`),
    down: () => calls.push("down"),
    refused: (e) => calls.push(`refused:${e.code}:${e.httpStatus}`),
  };
}

const ok = (ids: string[]) => ({
  ok: true,
  results: ids.map((id) => ({ order_id: id, ok: true, status: snapshot(id, 1) })),
});

beforeEach(() => {
  vi.useFakeTimers();
  sockets.length = 0;
});
afterEach(() => vi.useRealTimers());

describe("PaymentConnection", () => {
  it("needs an explicit base URL, and so does a client without a connection", () => {
    // @ts-expect-error: baseUrl is required
    expect(() => new PaymentConnection({})).toThrow("baseUrl");
    expect(() => new PaymentClient({ orderId: "ord_1", token: "t" })).toThrow("baseUrl");
    expect(
      new PaymentClient({ orderId: "ord_1", token: "t", baseUrl: "https://pay.example.com/" })
        .baseUrl,
    ).toBe("https://pay.example.com");
  });

  it("sends at most 50 orders a call", async () => {
    const connection = new PaymentConnection({ baseUrl: "https://pay.example.com" });
    const ids = Array.from({ length: 120 }, (_, i) => `ord_${i}`);
    ids.forEach((id) => connection.watch(id, "t-" + id, listener()));
    sockets[0].open();
    expect(sockets[0].emitted("subscribe_many").map((s) => s.payload.length)).toEqual([50, 50, 20]);
  });

  it("falls back to one subscribe per order on a server without subscribe_many", async () => {
    const connection = new PaymentConnection({ baseUrl: "" });
    const a = listener();
    connection.watch("ord_1", "t1", a);
    connection.watch("ord_2", "t2", listener());
    const socket = sockets[0];
    socket.open();
    socket
      .emitted("subscribe_many")[0]
      .ack({ ok: false, error: { code: "unknown_event", message: "Unknown event." } });
    expect(socket.emitted("subscribe").map((s) => s.payload.order_id)).toEqual(["ord_1", "ord_2"]);
    socket.emitted("subscribe")[0].ack({ ok: true, status: snapshot("ord_1", 3) });
    expect(a.calls).toEqual(["live", "subscribe:ord_1:v3"]);
    socket.drop();
    socket.open();
    expect(socket.emitted("subscribe_many")).toHaveLength(1); // remembered
  });

  it("retries an unanswered or rate-limited subscription, and gives up on a refused one", async () => {
    const connection = new PaymentConnection({ baseUrl: "https://pay.example.com" });
    const a = listener();
    const b = listener();
    connection.watch("ord_1", "t1", a);
    connection.watch("ord_2", "t2", b);
    const socket = sockets[0];
    socket.open();
    socket.emitted("subscribe_many")[0].fail();
    expect(a.calls).toEqual(["down"]);
    await vi.advanceTimersByTimeAsync(2001);
    const retry = socket.emitted("subscribe_many")[1];
    retry.ack({
      ok: true,
      results: [
        {
          order_id: "ord_1",
          ok: false,
          error: { code: "rate_limited", message: "Too many events; slow down." },
        },
        {
          order_id: "ord_2",
          ok: false,
          error: { code: "token_expired", message: "This payment link has expired." },
        },
      ],
    });
    expect(b.calls).toEqual(["down", "refused:token_expired:401"]);
    await vi.advanceTimersByTimeAsync(2001);
    expect(socket.emitted("subscribe").map((s) => s.payload.order_id)).toEqual(["ord_1"]);
    socket.emitted("subscribe")[0].ack({ ok: true, status: snapshot("ord_1", 1) });
    expect(a.calls).toEqual(["down", "down", "live", "subscribe:ord_1:v1"]);
    expect(connection.orderIds).toEqual(["ord_1"]);
  });

  it("gives a later watcher of a live order its snapshot at once", () => {
    const connection = new PaymentConnection({ baseUrl: "https://pay.example.com" });
    connection.watch("ord_1", "t1", listener());
    sockets[0].open();
    sockets[0].emitted("subscribe")[0].ack(ok(["ord_1"]).results[0]);
    sockets[0].push(snapshot("ord_1", 2));
    const late = listener();
    connection.watch("ord_1", "t1", late);
    expect(late.calls).toEqual(["live", "subscribe:ord_1:v2"]);
    expect(sockets[0].sent).toHaveLength(1);
  });
});

describe("a socket refused for the page's origin", () => {
  function answering(body: unknown) {
    const fetch = vi.fn(async (_url: string) => new Response(JSON.stringify(body)));
    vi.stubGlobal("fetch", fetch);
    return fetch;
  }
  afterEach(() => vi.unstubAllGlobals());

  it("asks the server once and says in the console which origin and setting", async () => {
    const fetch = answering({
      origin: "http://shop.localhost:5000",
      allowed: false,
      setting: "CORS_ALLOWED_ORIGINS",
    });
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    new PaymentConnection({ baseUrl: "https://pay.example.com" }).watch("ord_1", "t1", listener());
    sockets[0].fire("connect_error", new Error("websocket error"));
    sockets[0].fire("connect_error", new Error("websocket error")); // reconnects ask no more
    await vi.waitFor(() => expect(warn).toHaveBeenCalledTimes(1));
    expect(fetch.mock.calls.map(([url]) => url)).toEqual([
      "https://pay.example.com/realtime/origin",
    ]);
    expect(warn.mock.calls[0][0]).toContain("origin http://shop.localhost:5000");
    expect(warn.mock.calls[0][0]).toContain("add it to CORS_ALLOWED_ORIGINS");
  });

  it("stays quiet for an allowed origin, a server that is down, or a socket that connected", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const fetch = answering({ origin: "http://localhost", allowed: true, setting: "X" });
    openSocket("/admin"); // the admin namespace, on this page's own server
    sockets[0].fire("connect_error", new Error("websocket error"));
    await vi.waitFor(() => expect(fetch).toHaveBeenCalledTimes(1));
    // a namespace is a path of the socket's URL, not part of the server's address
    expect(fetch.mock.calls[0][0]).toBe(`${location.origin}/realtime/origin`);

    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("down"))));
    new PaymentConnection({ baseUrl: "https://pay.example.com" }).watch("o", "t", listener());
    sockets[1].fire("connect_error", new Error("websocket error"));

    const after = answering({ origin: "x", allowed: false, setting: "X" });
    new PaymentConnection({ baseUrl: "https://pay.example.com" }).watch("o", "t", listener());
    sockets[2].open();
    sockets[2].drop();
    sockets[2].fire("connect_error", new Error("websocket error"));
    await vi.advanceTimersByTimeAsync(10);
    expect(after).not.toHaveBeenCalled();
    expect(warn).not.toHaveBeenCalled();
  });
});
