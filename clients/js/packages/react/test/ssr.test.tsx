// @vitest-environment node
import { renderToString } from "react-dom/server";
import { describe, expect, it } from "vitest";

describe("on the server", () => {
  it("imports and renders with no window, opening nothing", async () => {
    expect(typeof window).toBe("undefined");
    const { PaymentDialog, PaymentProvider, usePaymentStatus } = await import("../src/index.js");
    function Status() {
      const { status, connection } = usePaymentStatus("ord_1", "tok");
      return (
        <p>
          {status ? status.order_status : "loading"} ({connection})
        </p>
      );
    }
    const html = renderToString(
      <PaymentProvider baseUrl="https://pay.example.com">
        <Status />
        <PaymentDialog orderId="ord_1" token="tok" inline />
      </PaymentProvider>,
    );
    expect(html).toBe("<p>loading<!-- --> (<!-- -->connecting<!-- -->)</p><div></div>");
  });
});
