import type { PaymentClientOptions } from "@paymentapp/client";

/** What `paymentapp:paid` and `onPaid` carry. */
export interface PaidDetail {
  orderId: string;
  orderNumber: string;
  amount: number;
  receipt: string | null;
}

export interface CloseDetail {
  orderId: string;
  paid: boolean;
}

export interface DialogOptions {
  orderId: string;
  token: string;
  baseUrl: string;
  description?: string;
  autoCloseMs?: number;
  clientOptions?: Partial<PaymentClientOptions>;
  onPaid?(detail: PaidDetail): void;
  onClose?(detail: CloseDetail): void;
}

export interface DialogHandle {
  close(): void;
}

/** The server's `static/js/pay-dialog.js` (the hosted and embeddable dialog). */
export interface DialogModule {
  open(options: DialogOptions): DialogHandle;
  mount(container: Element, options: DialogOptions): DialogHandle;
}

const modules = new Map<string, Promise<DialogModule>>();

/** Load the dialog from the paymentapp server itself: one look, one set of strings. */
export function loadDialog(baseUrl: string): Promise<DialogModule> {
  const url = `${baseUrl.replace(/\/$/, "")}/static/js/pay-dialog.js`;
  let module = modules.get(url);
  if (!module) {
    module = import(/* @vite-ignore */ url) as Promise<DialogModule>;
    modules.set(url, module);
    module.catch(() => modules.delete(url)); // a later mount tries again
  }
  return module;
}
