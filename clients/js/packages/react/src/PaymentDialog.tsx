import type { PaymentClientOptions } from "@paymentapp/client";
import { useEffect, useRef } from "react";
import { usePaymentContext } from "./context.js";
import { loadDialog, type CloseDetail, type DialogHandle, type PaidDetail } from "./dialog.js";

export interface PaymentDialogProps {
  orderId: string;
  token: string;
  /** Once, when the order is paid (fulfil on your server, not here). */
  onPaid?(detail: PaidDetail): void;
  /** When the customer closes the dialog (not when it unmounts). */
  onClose?(detail: CloseDetail): void;
  /** Modal: close this long after success (default 5000; 0 keeps it open). */
  autoCloseMs?: number;
  /** Shown under the amount. */
  description?: string;
  /** Render inside the page (like the hosted page) instead of as a modal. */
  inline?: boolean;
  /** The dialog's own client options, e.g. `{fallbackAfterMs: 5000}`. */
  clientOptions?: Partial<PaymentClientOptions>;
  /** The dialog could not be loaded from the server. */
  onError?(error: unknown): void;
  className?: string;
}

/**
 * The paymentapp payment dialog (the same one as the hosted page, in a shadow root),
 * loaded from the provider's server: open while mounted, closed on unmount.
 */
export function PaymentDialog(props: PaymentDialogProps) {
  const { baseUrl } = usePaymentContext();
  const { orderId, token, autoCloseMs, description, inline = false } = props;
  const latest = useRef(props); // the callbacks of the last render, for the open dialog
  useEffect(() => {
    latest.current = props;
  });
  const container = useRef<HTMLDivElement>(null);

  useEffect(() => {
    let dialog: DialogHandle | null = null;
    let unmounted = false;
    loadDialog(baseUrl).then(
      (module) => {
        if (unmounted) return;
        const options = {
          orderId,
          token,
          baseUrl,
          clientOptions: latest.current.clientOptions,
          onPaid: (detail: PaidDetail) => latest.current.onPaid?.(detail),
          onClose: (detail: CloseDetail) => {
            if (!unmounted) latest.current.onClose?.(detail);
          },
          // Only what is given: the dialog has its own defaults.
          ...(autoCloseMs === undefined ? {} : { autoCloseMs }),
          ...(description === undefined ? {} : { description }),
        };
        dialog =
          inline && container.current
            ? module.mount(container.current, options)
            : module.open(options);
      },
      (error) => {
        if (unmounted) return;
        if (latest.current.onError) latest.current.onError(error);
        else console.error("paymentapp: could not load the payment dialog", error);
      },
    );
    return () => {
      unmounted = true;
      dialog?.close();
    };
  }, [baseUrl, orderId, token, autoCloseMs, description, inline]);

  return inline ? <div ref={container} className={props.className} /> : null;
}
