// The wire format (docs/realtime.md): the status snapshot that `GET /api/orders/<id>/status`,
// the `subscribe` ack and every `payment_update` carry, and a socket's refusal. Types only.

export type OrderStatusName = "pending" | "paid" | "cancelled";
/** Money given back from the order (a refunded order stays `paid`: docs/refunds.md). */
export type RefundStatusName =
  | "none"
  | "partially_refunded"
  | "refunded"
  | "refund_pending"
  | (string & {});
export type PaymentStatusName =
  | "pending"
  | "completed"
  | "failed"
  | "cancelled"
  | "timeout"
  | (string & {});

/** A payment as the status snapshot carries it. */
export interface PaymentSnapshot {
  id: string;
  /** How it was paid, e.g. `stk` or `paybill` (servers since Paybill). */
  method?: string;
  status: PaymentStatusName;
  result_code: number | null;
  result_desc: string | null;
  receipt: string | null;
  amount: number;
  phone_masked: string | null;
  needs_review: boolean;
  created_at: string | null;
  paid_at: string | null;
  retry_at: string | null;
}

/** `GET /api/orders/<id>/status`, the `subscribe` ack and every `payment_update`. */
export interface StatusSnapshot {
  order_id: string;
  order_number: string;
  order_status: OrderStatusName;
  amount: number;
  version: number;
  updated_at: string | null;
  payment: PaymentSnapshot | null;
  // Servers since Paybill add these:
  amount_paid?: number;
  amount_due?: number;
  expires_at?: string | null;
  // Servers since refunds add these:
  amount_refunded?: number;
  refund_status?: RefundStatusName;
  /** Every payment attempt, compactly. */
  payments?: Array<{
    id: string;
    method: string;
    status: PaymentStatusName;
    amount: number;
    paid_amount: number | null;
    amount_refunded?: number;
  }>;
}

/** A socket ack's refusal (`{ok: false, error}`): the contract's error code and message. */
export interface SocketRefusal {
  code: string;
  message: string;
}
