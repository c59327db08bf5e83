// paymentapp payment dialog: pay an order with M-Pesa, watch it flip to paid live.
//
// Embed with one script tag, then either a data attribute or a call:
//
//   <script type="module" src="https://pay.example.com/static/js/pay-dialog.js"></script>
//   <button data-paymentapp-order="ord_…" data-paymentapp-token="…">Pay with M-Pesa</button>
//
//   PaymentApp.open({ orderId, token, onPaid(detail) {…}, onClose() {…} });
//
// The dialog renders in a shadow root (the host page's CSS cannot leak in) and is built
// on paymentapp-client.js. Events: `paymentapp:paid` {orderId, orderNumber, amount,
// receipt} bubbles from the dialog's host element to `document`; `paymentapp:close`
// {orderId, paid} fires on `document`.
//
// This file is the entry point (open, mount, the data-attribute trigger, window.PaymentApp);
// the dialog is in modules beside it, each served like this one (cross-origin too):
// - pay-dialog-component.js  PaymentDialog: render, follow the order, close
// - pay-dialog-states.js     a status → the view to show, and the words for each
// - pay-dialog-phone.js      the phone form: checks, network hint, Pay's cooldown
// - pay-dialog-paybill.js    the Paybill panel: details to type, copy buttons, what is due
// - pay-dialog-markup.js     the card's HTML and icons

import { PaymentClient } from "./paymentapp-client.js";
import { DEFAULT_BASE_URL, PaymentDialog } from "./pay-dialog-component.js";
// Not used here: named so the browser fetches every module of the dialog as soon as this
// file arrives, rather than one level of imports per round trip.
import "./pay-dialog-markup.js";
import "./pay-dialog-paybill.js";
import "./pay-dialog-phone.js";
import "./pay-dialog-states.js";

export { PaymentDialog };

const openDialogs = new Map(); // orderId → the open modal, so a double click opens one

/** Open the payment dialog as a modal over the current page. */
export function open(options) {
  const existing = openDialogs.get(options.orderId);
  if (existing && !existing.closed) return existing;
  const onClose = options.onClose;
  const dialog = new PaymentDialog({
    ...options,
    mode: "modal",
    onClose(detail) {
      openDialogs.delete(options.orderId);
      if (typeof onClose === "function") onClose(detail);
    },
  });
  openDialogs.set(options.orderId, dialog);
  return dialog;
}

/** Render the dialog inline inside `container` (the hosted payment page uses this). */
export function mount(container, options) {
  return new PaymentDialog({ ...options, mode: "inline", container });
}

// One-tag embedding: any element with data-paymentapp-order/-token opens the dialog.
document.addEventListener("click", (event) => {
  const trigger = event.target.closest && event.target.closest("[data-paymentapp-order]");
  if (!trigger) return;
  event.preventDefault();
  open({
    opener: trigger,
    orderId: trigger.dataset.paymentappOrder,
    token: trigger.dataset.paymentappToken,
    description: trigger.dataset.paymentappDescription,
  });
});

const PaymentApp = { open, mount, PaymentClient, PaymentDialog, baseUrl: DEFAULT_BASE_URL };
window.PaymentApp = PaymentApp;
document.dispatchEvent(new CustomEvent("paymentapp:ready", { detail: PaymentApp }));
export default PaymentApp;
