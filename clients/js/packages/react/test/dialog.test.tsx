import { act, cleanup, render } from "@testing-library/react";
import { StrictMode } from "react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { loadDialog, type DialogOptions } from "../src/dialog.js";
import { PaymentDialog, PaymentProvider } from "../src/index.js";

vi.mock("../src/dialog.js", () => ({ loadDialog: vi.fn() }));

interface Opened {
  how: "open" | "mount";
  options: DialogOptions;
  container?: Element;
  close: ReturnType<typeof vi.fn>;
}
let opened: Opened[];

function fakeModule() {
  const handle = (how: Opened["how"], options: DialogOptions, container?: Element) => {
    const entry: Opened = { how, options, container, close: vi.fn() };
    // Like pay-dialog.js: close() tells onClose, once.
    let closed = false;
    entry.close.mockImplementation(() => {
      if (closed) return;
      closed = true;
      options.onClose?.({ orderId: options.orderId, paid: false });
    });
    opened.push(entry);
    return { close: entry.close };
  };
  return {
    open: (options: DialogOptions) => handle("open", options),
    mount: (container: Element, options: DialogOptions) => handle("mount", options, container),
  };
}

const BASE = "https://pay.example.com";
const wrap = (ui: React.ReactNode) => (
  <StrictMode>
    <PaymentProvider baseUrl={BASE}>{ui}</PaymentProvider>
  </StrictMode>
);

beforeEach(() => {
  opened = [];
  vi.mocked(loadDialog).mockResolvedValue(fakeModule());
});
afterEach(cleanup);

describe("PaymentDialog", () => {
  it("opens the server's dialog once under StrictMode and closes it on unmount", async () => {
    const onClose = vi.fn();
    const view = render(wrap(<PaymentDialog orderId="ord_1" token="tok" onClose={onClose} />));
    await act(async () => {});
    expect(loadDialog).toHaveBeenCalledWith(BASE);
    expect(opened).toHaveLength(1);
    expect(opened[0].how).toBe("open");
    expect(opened[0].options).toMatchObject({ orderId: "ord_1", token: "tok", baseUrl: BASE });
    expect(opened[0].options).not.toHaveProperty("autoCloseMs");
    view.unmount();
    expect(opened[0].close).toHaveBeenCalledTimes(1);
    expect(onClose).not.toHaveBeenCalled(); // unmounting is the app's own doing
  });

  it("passes the customer's close and the payment on to the latest callbacks", async () => {
    const first = vi.fn();
    const onPaid = vi.fn();
    const onClose = vi.fn();
    const view = render(
      wrap(<PaymentDialog orderId="ord_1" token="tok" onPaid={first} autoCloseMs={0} />),
    );
    await act(async () => {});
    view.rerender(
      wrap(
        <PaymentDialog
          orderId="ord_1"
          token="tok"
          onPaid={onPaid}
          onClose={onClose}
          autoCloseMs={0}
        />,
      ),
    );
    const detail = { orderId: "ord_1", orderNumber: "ORD-1", amount: 1450, receipt: "SIM123" };
    act(() => opened[0].options.onPaid?.(detail));
    expect(onPaid).toHaveBeenCalledWith(detail);
    expect(first).not.toHaveBeenCalled();
    expect(opened[0].options.autoCloseMs).toBe(0);
    act(() => opened[0].close());
    expect(onClose).toHaveBeenCalledWith({ orderId: "ord_1", paid: false });
    expect(opened).toHaveLength(1);
  });

  it("switches orders: the old dialog closes, the new one opens", async () => {
    const view = render(wrap(<PaymentDialog orderId="ord_1" token="tok1" />));
    await act(async () => {});
    view.rerender(wrap(<PaymentDialog orderId="ord_2" token="tok2" />));
    await act(async () => {});
    expect(opened.map((o) => o.options.orderId)).toEqual(["ord_1", "ord_2"]);
    expect(opened[0].close).toHaveBeenCalledTimes(1);
    expect(opened[1].close).not.toHaveBeenCalled();
  });

  it("renders inline in its own element", async () => {
    const view = render(wrap(<PaymentDialog orderId="ord_1" token="tok" inline className="pay" />));
    await act(async () => {});
    expect(opened[0].how).toBe("mount");
    expect(opened[0].container).toBe(view.container.querySelector("div.pay"));
  });

  it("reports a dialog that could not be loaded", async () => {
    const problem = new TypeError("Failed to fetch dynamically imported module");
    vi.mocked(loadDialog).mockRejectedValue(problem);
    const onError = vi.fn();
    render(wrap(<PaymentDialog orderId="ord_1" token="tok" onError={onError} />));
    await act(async () => {});
    expect(onError).toHaveBeenCalledWith(problem);
    expect(onError).toHaveBeenCalledTimes(1);
  });
});
