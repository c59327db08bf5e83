// PaymentError: every failure of the customer API, over HTTP or the socket, in the
// contract's error shape (docs/api.md), so a caller reads both alike.

import type { PaymentSnapshot, SocketRefusal } from "./wire.js";

// What a socket refusal would have been over HTTP (docs/api.md), so both read alike.
export const REFUSAL_STATUS: Record<string, number> = {
  invalid_payload: 400,
  missing_token: 401,
  token_expired: 401,
  invalid_token: 403,
  order_not_found: 404,
};

/** An error from the customer API (or a refused subscription), in the contract's shape. */
export class PaymentError extends Error {
  /** The HTTP status; 0 when the server could not be reached. */
  httpStatus: number;
  /** The contract's error code: `invalid_token`, `phone_busy`, `network_error`, … */
  code: string;
  /** Field errors of a 422, e.g. `{phone: "…"}`. */
  fields: Record<string, string>;
  /** The pending or completed payment a 409 is about. */
  payment: PaymentSnapshot | null;
  /** Seconds to wait before trying again (429). */
  retryAfter: number | null;

  constructor(httpStatus: number, body?: unknown, retryAfter?: number | null) {
    const data = (body && typeof body === "object" ? body : {}) as {
      error?: { code?: string; message?: string; fields?: Record<string, string> };
      payment?: PaymentSnapshot;
      retry_after?: number;
    };
    const error = data.error || {};
    super(error.message || `Request failed (${httpStatus})`);
    this.name = "PaymentError";
    this.httpStatus = httpStatus;
    this.code = error.code || (httpStatus ? "http_" + httpStatus : "network_error");
    this.fields = error.fields || {};
    this.payment = data.payment || null;
    this.retryAfter = retryAfter || Number(data.retry_after) || null;
  }

  /** A socket ack's refusal `{code, message}` as a PaymentError. */
  static fromRefusal(refusal: SocketRefusal): PaymentError {
    return new PaymentError(REFUSAL_STATUS[refusal.code] ?? 0, { error: refusal });
  }
}
