import {
  PaymentConnection,
  type PaymentClientOptions,
  type SocketConnectOptions,
} from "@paymentapp/client";
import {
  createContext,
  useContext,
  useMemo,
  useState,
  useSyncExternalStore,
  type ReactNode,
} from "react";

/** Options every `usePaymentStatus` below the provider starts from. */
export type ClientOptions = Omit<
  PaymentClientOptions,
  "orderId" | "token" | "baseUrl" | "connection"
>;

interface PaymentContextValue {
  baseUrl: string;
  clientOptions: ClientOptions;
  connectionFor(baseUrl: string): PaymentConnection;
}

const PaymentContext = createContext<PaymentContextValue | null>(null);

export interface PaymentProviderProps {
  /** The paymentapp server, e.g. `https://pay.example.com` ("" for this page's origin). */
  baseUrl: string;
  /** Passed to socket.io-client's `io()` when the shared socket opens. */
  socketOptions?: SocketConnectOptions;
  /** Defaults for every `usePaymentStatus` below (e.g. `{fallbackAfterMs: 5000}`). */
  clientOptions?: ClientOptions;
  children?: ReactNode;
}

/**
 * One shared connection per server for everything below it. The socket opens with the
 * first watched order and closes a second after the last one is gone, so the provider
 * itself holds nothing open (and is safe to render on a server).
 */
export function PaymentProvider({
  baseUrl,
  socketOptions,
  clientOptions,
  children,
}: PaymentProviderProps) {
  const [connections] = useState(() => new Map<string, PaymentConnection>());
  const value = useMemo<PaymentContextValue>(
    () => ({
      baseUrl,
      clientOptions: clientOptions || {},
      connectionFor(url) {
        const key = url.replace(/\/$/, "");
        let connection = connections.get(key);
        if (!connection) {
          connection = new PaymentConnection({ baseUrl: key, socketOptions });
          connections.set(key, connection);
        }
        return connection;
      },
    }),
    // socketOptions are read when a server's connection is first made.
    [baseUrl, clientOptions, connections],
  );
  return <PaymentContext.Provider value={value}>{children}</PaymentContext.Provider>;
}

export function usePaymentContext(): PaymentContextValue {
  const value = useContext(PaymentContext);
  if (!value)
    throw new Error("Wrap your app in <PaymentProvider baseUrl=…> to use @paymentapp/react");
  return value;
}

export type SocketState = PaymentConnection["state"];

export interface PaymentSocket {
  /** The shared connection: `watch(orderId, token, listener)` is reference-counted. */
  connection: PaymentConnection;
  /** `idle` (nothing watched), `connecting`, `live` or `reconnecting`. */
  state: SocketState;
  baseUrl: string;
}

/** The app's one socket to a paymentapp server (the provider's, or `options.baseUrl`'s). */
export function usePaymentSocket(options: { baseUrl?: string } = {}): PaymentSocket {
  const context = usePaymentContext();
  const baseUrl = options.baseUrl ?? context.baseUrl;
  const connection = useMemo(() => context.connectionFor(baseUrl), [context, baseUrl]);
  const subscribe = useMemo(
    () => (notify: () => void) => {
      connection.addEventListener("state", notify);
      return () => connection.removeEventListener("state", notify);
    },
    [connection],
  );
  const read = () => connection.state;
  const state = useSyncExternalStore(subscribe, read, read);
  return { connection, state, baseUrl: connection.baseUrl };
}
