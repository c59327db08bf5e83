import { formatKes, usePaymentSocket, usePaymentStatus } from "@paymentapp/react";
import { useEffect, useState } from "react";
import { boardOrders, type CheckoutOrder } from "./api";

let created: Promise<CheckoutOrder[]> | null = null; // once per page, StrictMode or not

/** Twenty orders live, every one through the same socket. */
export function Board() {
  const [orders, setOrders] = useState<CheckoutOrder[] | null>(null);
  const { state } = usePaymentSocket();
  useEffect(() => {
    let current = true;
    created ??= boardOrders();
    created.then((list) => current && setOrders(list));
    return () => {
      current = false;
    };
  }, []);
  if (!orders) return <p>Creating orders…</p>;
  return (
    <main>
      <h1>Status board</h1>
      <p data-testid="socket" data-state={state}>
        Socket: {state}
      </p>
      <table>
        <thead>
          <tr>
            <th>Order</th>
            <th>Amount</th>
            <th>Status</th>
            <th>Receipt</th>
          </tr>
        </thead>
        <tbody>
          {orders.map((order) => (
            <Row key={order.orderId} order={order} />
          ))}
        </tbody>
      </table>
    </main>
  );
}

function Row({ order }: { order: CheckoutOrder }) {
  const { status, payment, connection } = usePaymentStatus(order.orderId, order.token);
  const state = status?.order_status ?? "loading";
  return (
    <tr data-order={order.orderId} data-status={state} data-connection={connection}>
      <td>{order.orderNumber}</td>
      <td>{formatKes(order.amount)}</td>
      <td>
        {state}
        {payment && state !== "paid" ? ` (payment ${payment.status})` : ""}
      </td>
      <td>{payment?.receipt ?? "—"}</td>
    </tr>
  );
}
