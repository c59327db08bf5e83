// The shop's backend (backend.ts): it creates orders with its paymentapp API key.
export interface CheckoutOrder {
  orderId: string;
  token: string;
  orderNumber: string;
  amount: number;
}

async function call<T>(method: string, path: string): Promise<T> {
  const response = await fetch(path, { method });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json() as Promise<T>;
}

export const checkout = () => call<CheckoutOrder>("POST", "/api/checkout");
export const boardOrders = () => call<CheckoutOrder[]>("POST", "/api/board");
export const confirm = (orderId: string) =>
  call<{ orderNumber: string; paid: boolean }>("GET", `/api/orders/${orderId}/confirm`);
