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
// Nothing here touches `window` or `document` until `start()` (safe to import on a server).
//
// The public API, re-exported from one module per job:
// - wire.ts        the status snapshot and refusal shapes the server sends (types only)
// - phones.ts      phone rules, networks and money (the twin of paymentapp/phones.py)
// - errors.ts      PaymentError, every failure in the contract's shape
// - connection.ts  PaymentConnection, one shared socket for many orders; openSocket
// - client.ts      PaymentClient, one order's live status, polling fallback and pay()
// - http.ts        the customer API's one JSON request (internal)

export type {
  OrderStatusName,
  PaymentSnapshot,
  PaymentStatusName,
  RefundStatusName,
  SocketRefusal,
  StatusSnapshot,
} from "./wire.js";
export {
  NETWORK_RANGES,
  PHONE_EXAMPLE,
  PHONE_FORMATS,
  formatKes,
  maskPhone,
  networkOf,
  normalizePhone,
  phoneProblem,
  type Network,
} from "./phones.js";
export { PaymentError } from "./errors.js";
export {
  PaymentConnection,
  openSocket,
  type OrderListener,
  type PaymentConnectionOptions,
  type SocketConnectOptions,
} from "./connection.js";
export {
  ConnectionState,
  PaymentClient,
  type ConnectionEventDetail,
  type PaymentClientOptions,
  type StatusEventDetail,
  type StatusSource,
} from "./client.js";
