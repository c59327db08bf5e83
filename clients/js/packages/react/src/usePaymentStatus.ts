import {
  PaymentClient,
  type ConnectionState,
  type OrderStatusName,
  type PaymentError,
  type PaymentSnapshot,
  type StatusSnapshot,
} from "@paymentapp/client";
import { useCallback, useEffect, useMemo, useState, useSyncExternalStore } from "react";
import { usePaymentContext, usePaymentSocket, type ClientOptions } from "./context.js";

export interface UsePaymentStatusOptions extends ClientOptions {
  /** Another paymentapp server than the provider's. */
  baseUrl?: string;
}

export interface OrderSummary {
  id: string;
  number: string;
  amount: number;
  status: OrderStatusName;
  version: number;
}

export interface PaymentStatus {
  /** The latest snapshot (highest `version`: never goes backwards), null until the first. */
  status: StatusSnapshot | null;
  /** The order's side of it. */
  order: OrderSummary | null;
  /** The order's latest payment, if any. */
  payment: PaymentSnapshot | null;
  /** `connecting | live | reconnecting | offline` for this order. */
  connection: ConnectionState;
  /** Whether the HTTP fallback is polling (the socket is down). */
  polling: boolean;
  /** The last `pay` error, or why the server refused the order or token (fatal). */
  error: PaymentError | null;
  /** Start an STK Push; rejects with the PaymentError that `error` then holds. */
  pay(phone: string): Promise<PaymentSnapshot>;
  /** Clear `error`; after a refusal, start again; in any case re-read the status now. */
  retry(): void;
}

type Listener = () => void;
const EVENTS = ["status", "connection", "error"];

/**
 * Live status of one order over the provider's shared socket. Options are read when the
 * order (id, token) changes. Without an order id and token it is idle.
 */
export function usePaymentStatus(
  orderId: string | null | undefined,
  token: string | null | undefined,
  options: UsePaymentStatusOptions = {},
): PaymentStatus {
  const { baseUrl, ...clientOptions } = options;
  const context = usePaymentContext();
  const { connection } = usePaymentSocket({ baseUrl });
  const client = useMemo(
    () =>
      orderId && token
        ? new PaymentClient({
            ...context.clientOptions,
            ...clientOptions,
            orderId,
            token,
            connection,
          })
        : null,
    // A new client (and subscription) per order; its options are read then.
    [connection, orderId, token],
  );

  useEffect(() => {
    if (!client) return;
    client.start();
    return () => client.stop();
  }, [client]);

  const subscribe = useCallback(
    (notify: Listener) => {
      EVENTS.forEach((name) => client?.addEventListener(name, notify));
      return () => EVENTS.forEach((name) => client?.removeEventListener(name, notify));
    },
    [client],
  );
  const status = useClientValue(client, subscribe, (c) => c.status, null);
  const connectionState = useClientValue(client, subscribe, (c) => c.state, "connecting");
  const polling = useClientValue(client, subscribe, (c) => c.polling, false);
  const fatal = useClientValue(client, subscribe, (c) => c.fatal, null);

  // Kept with the client it came from: an order switch starts without an error.
  const [payError, setPayError] = useState<{ client: PaymentClient; error: PaymentError } | null>(
    null,
  );
  const pay = useCallback(
    async (phone: string) => {
      if (!client) throw new Error("usePaymentStatus: no order to pay");
      setPayError(null);
      try {
        return await client.pay(phone);
      } catch (error) {
        setPayError({ client, error: error as PaymentError });
        throw error;
      }
    },
    [client],
  );
  const retry = useCallback(() => {
    setPayError(null);
    void client?.retry();
  }, [client]);

  const order = useMemo<OrderSummary | null>(
    () =>
      status && {
        id: status.order_id,
        number: status.order_number,
        amount: status.amount,
        status: status.order_status,
        version: status.version,
      },
    [status],
  );
  return {
    status,
    order,
    payment: status?.payment ?? null,
    connection: connectionState,
    polling,
    error: fatal ?? (payError?.client === client ? payError.error : null),
    pay,
    retry,
  };
}

/** One field of the client, re-read whenever it dispatches an event. */
function useClientValue<T>(
  client: PaymentClient | null,
  subscribe: (notify: Listener) => () => void,
  read: (client: PaymentClient) => T,
  idle: T,
): T {
  const get = () => (client ? read(client) : idle);
  return useSyncExternalStore(subscribe, get, get);
}
