// The shop's own tiny backend, as Vite middleware (in `vite` and `vite preview` alike).
// It holds the paymentapp API key, which never reaches the browser:
//   POST /api/checkout            create an order for the product → {orderId, token, …}
//   POST /api/board               create 20 orders for the status board
//   GET  /api/orders/:id/confirm  ask paymentapp (with the key) whether it is paid: this,
//                                 not the browser's event, is what fulfils an order
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Connect, Plugin } from "vite";

import { PRODUCT } from "./src/product";
const BOARD_SIZE = 20;

interface Order {
  id: string;
  number: string;
  amount: number;
  status: string;
  client_token: string;
}

export function shopBackend(): Plugin {
  const middleware: Connect.NextHandleFunction = (req, res, next) => {
    handle(req, res).then((handled) => handled || next(), next);
  };
  return {
    name: "shop-backend",
    configureServer: (server) => void server.middlewares.use(middleware),
    configurePreviewServer: (server) => void server.middlewares.use(middleware),
  };
}

async function paymentapp(path: string, init: RequestInit = {}) {
  const url = (process.env.PAYMENTAPP_URL || "http://127.0.0.1:5000").replace(/\/$/, "");
  const key = process.env.PAYMENTAPP_API_KEY;
  if (!key) throw new Error("Set PAYMENTAPP_API_KEY (flask --app wsgi apikey create shop)");
  const response = await fetch(url + path, {
    ...init,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
  });
  if (!response.ok)
    throw new Error(`paymentapp ${path}: ${response.status} ${await response.text()}`);
  return response.json();
}

const createOrder = async (description: string, amount: number) =>
  (await paymentapp("/api/orders", {
    method: "POST",
    body: JSON.stringify({ amount, description }),
  })) as Order;

const forBrowser = (order: Order) => ({
  orderId: order.id,
  token: order.client_token,
  orderNumber: order.number,
  amount: order.amount,
});

async function handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const send = (status: number, body: unknown) => {
    res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
    res.end(JSON.stringify(body));
    return true;
  };
  const path = (req.url || "").split("?")[0];
  try {
    if (req.method === "POST" && path === "/api/checkout") {
      return send(201, forBrowser(await createOrder(PRODUCT.name, PRODUCT.amount)));
    }
    if (req.method === "POST" && path === "/api/board") {
      const orders = [];
      for (let i = 1; i <= BOARD_SIZE; i++)
        orders.push(await createOrder(`Board order ${i}`, 100 + i));
      return send(201, orders.map(forBrowser));
    }
    const confirm = path.match(/^\/api\/orders\/([\w-]+)\/confirm$/);
    if (req.method === "GET" && confirm) {
      const order = (await paymentapp(`/api/orders/${confirm[1]}`)) as Order;
      return send(200, { orderNumber: order.number, paid: order.status === "paid" });
    }
  } catch (error) {
    return send(502, { error: String(error) });
  }
  return false;
}
