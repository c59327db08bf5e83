import { PaymentDialog, formatKes, usePaymentStatus } from "@paymentapp/react";
import { useState } from "react";
import { PRODUCT } from "./product";
import { checkout, confirm, type CheckoutOrder } from "./api";

export function ProductPage() {
  const [order, setOrder] = useState<CheckoutOrder | null>(null);
  const [open, setOpen] = useState(false);
  const [confirmed, setConfirmed] = useState<string | null>(null);
  const [problem, setProblem] = useState("");

  async function buy() {
    setProblem("");
    setConfirmed(null);
    try {
      setOrder(await checkout());
      setOpen(true);
    } catch {
      setProblem("The shop could not create an order. Try again.");
    }
  }

  return (
    <main>
      <h1>{PRODUCT.name}</h1>
      <p className="price">{formatKes(PRODUCT.amount)}</p>
      <button type="button" onClick={buy}>
        Buy with M-Pesa
      </button>
      {problem && <p role="alert">{problem}</p>}
      {order && <OrderLine order={order} />}
      {confirmed && (
        <p data-testid="confirmed">Confirmed by the shop: {confirmed} is paid. Thank you!</p>
      )}
      {order && open && (
        <PaymentDialog
          orderId={order.orderId}
          token={order.token}
          description={PRODUCT.name}
          onPaid={async () => {
            // Fulfil on the server: it asks paymentapp itself, never trusting this event alone.
            const answer = await confirm(order.orderId);
            if (answer.paid) setConfirmed(answer.orderNumber);
          }}
          onClose={() => setOpen(false)}
        />
      )}
    </main>
  );
}

/** The hook on its own: the order's live status next to the dialog. */
function OrderLine({ order }: { order: CheckoutOrder }) {
  const { status, payment, connection } = usePaymentStatus(order.orderId, order.token);
  const state = status?.order_status ?? "loading";
  return (
    <p data-testid="order-status" data-status={state} data-connection={connection}>
      Order {order.orderNumber}: {state}
      {payment?.receipt ? ` (receipt ${payment.receipt})` : ""} · {connection}
    </p>
  );
}
