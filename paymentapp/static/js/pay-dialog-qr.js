// Pay by QR: on a wide screen (a shopper on a computer, phone in hand) the phone form has
// the order's Dynamic QR beside it: the M-Pesa app scans it and pays the Paybill with the
// amount due and the order number filled in; the payment arrives like any Paybill payment
// and the dialog turns to "Payment received" by itself. Below 900 px nothing changes: the
// phone form comes first, as on a phone. The image is the app's own
// (`GET /api/orders/<id>/qr.png`), asked again only when the amount due changes.

import { formatKes } from "./paymentapp-client.js";

export const QR_WIDE = "(min-width: 900px)";

export const QR_PANEL = `
      <aside class="pa-qr" aria-labelledby="pa-qr-title">
        <h3 class="pa-qr-title" id="pa-qr-title">Or scan with the M-Pesa app</h3>
        <img class="pa-qr-image" width="200" height="200" alt="" decoding="async">
        <p class="pa-qr-text pa-muted">In the M-Pesa app: Lipa na M-Pesa, Scan QR. Or pay Paybill
          <strong data-qr="business">…</strong>, account <strong data-qr="account">…</strong>,
          <strong data-qr="amount">…</strong>.</p>
      </aside>`;

export class QrPanel {
  /**
   * @param {Element} frame  the dialog's rendered card
   * @param {object} o
   * @param {string} o.baseUrl  the app's address
   * @param {string} o.orderId
   * @param {string} o.token    the order's client token (an <img> sends no header)
   */
  constructor(frame, { baseUrl, orderId, token }) {
    this.frame = frame;
    this.card = frame.querySelector(".pa-card");
    this.image = frame.querySelector(".pa-qr-image");
    this.url = `${baseUrl}/api/orders/${encodeURIComponent(orderId)}/qr.png?token=${encodeURIComponent(token)}`;
    this.wide = window.matchMedia(QR_WIDE);
    this.due = null;
    this.failed = false;
    this.status = null;
    this.image.addEventListener("error", () => {
      this.failed = true; // no QR today (M-Pesa refused, or it is off): the form alone
      this._show(false);
    });
    this.image.addEventListener("load", () => this._show(this._offered()));
    this.wide.addEventListener("change", () => this.update(this.status));
  }

  _offered() {
    const s = this.status;
    return Boolean(
      s && s.paybill && s.paybill.qr && s.order_status === "pending" && s.amount_due > 0 &&
        this.wide.matches && !this.failed,
    );
  }

  _show(on) {
    const state = on ? "on" : "off";
    this.card.dataset.qr = state;
    this.frame.dataset.qr = state;
    this.frame.getRootNode().host.dataset.qr = state; // the page may widen around it
  }

  /** Follow the order: the QR of what is due, only while something is due. */
  update(status) {
    this.status = status;
    if (!this._offered()) return this._show(false);
    const due = status.amount_due;
    const business = String(status.paybill.business_number);
    const account = String(status.paybill.account || status.order_number);
    this.frame.querySelector('[data-qr="business"]').textContent = business;
    this.frame.querySelector('[data-qr="account"]').textContent = account;
    this.frame.querySelector('[data-qr="amount"]').textContent = formatKes(due);
    this.image.alt = `QR code: pay ${formatKes(due)} to Paybill ${business}, account ${account}`;
    if (due !== this.due) {
      this.due = due;
      this.image.src = `${this.url}&due=${due}`; // a new amount is a new image
    } else if (this.image.complete && this.image.naturalWidth) {
      this._show(true);
    }
  }
}
