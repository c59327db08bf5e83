// The customer API over HTTP: one JSON request with the order's token (never cookies), a
// timeout, and any failure (unreachable, or an error status) as a PaymentError.

import { PaymentError } from "./errors.js";

/** What a request needs besides the method and path. */
export interface RequestContext {
  /** The paymentapp server, no trailing slash ("" is this page's origin). */
  baseUrl: string;
  /** The order's client token (`X-Order-Token`). */
  token: string;
  timeoutMs: number;
}

/** `/api/orders/<id>/<what>`, the order id escaped. */
export function orderPath(orderId: string, what: "status" | "payments"): string {
  return `/api/orders/${encodeURIComponent(orderId)}/${what}`;
}

/** Send `json` (if any) and resolve to the response's JSON body; reject with a PaymentError. */
export async function request<T>(
  { baseUrl, token, timeoutMs }: RequestContext,
  method: string,
  path: string,
  json?: unknown,
): Promise<T> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  const headers: Record<string, string> = {
    "X-Order-Token": token,
    Accept: "application/json",
  };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(baseUrl + path, {
      method,
      headers,
      body: json === undefined ? undefined : JSON.stringify(json),
      signal: controller.signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new PaymentError(0, {
      error: { code: "network_error", message: "Could not reach the payment server." },
    });
  } finally {
    clearTimeout(timer);
  }
  let body: unknown = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw new PaymentError(response.status, body, retryAfter);
  }
  return body as T;
}
