// The payment dialog itself (PaymentDialog): renders the card into a shadow root, as a
// modal or inline, follows its order's PaymentClient (status → view, the connection
// badge, toasts, the prompt's countdown, success and its events), and closes. The phone
// form and the Paybill panel are their own modules; pay-dialog.js is the entry point
// that opens it.

import { ConnectionState, PaymentClient, formatKes } from "./paymentapp-client.js";
import { ICONS, TEMPLATE } from "./pay-dialog-markup.js";
import { PaybillPanel } from "./pay-dialog-paybill.js";
import { PhoneForm } from "./pay-dialog-phone.js";
import { QrPanel } from "./pay-dialog-qr.js";
import {
  CONNECTION_LABELS,
  PHONE_COOLDOWN_NOTE,
  failureFor,
  formatClock,
  nobreak,
  refundNote,
  retryUntil,
  viewFor,
} from "./pay-dialog-states.js";

const CSS_URL = new URL("../css/pay-dialog.css", import.meta.url).href;
// The client needs the server's URL: by default, the server this dialog was loaded from.
export const DEFAULT_BASE_URL = new URL("../../", import.meta.url).href.replace(/\/$/, "");
const PROMPT_LIFETIME_S = 120; // an STK prompt lives about two minutes on the handset
const AUTO_CLOSE_MS = 5000;

export class PaymentDialog {
  /**
   * @param {object} o
   * @param {string} o.orderId
   * @param {string} o.token
   * @param {"modal"|"inline"} [o.mode]  modal overlay (default) or inline in `o.container`
   * @param {Element} [o.container]      where an inline dialog renders
   * @param {object} [o.initialStatus]   a status snapshot the page already has
   * @param {string} [o.description]     what is being paid for
   * @param {number} [o.autoCloseMs]     modal: close this long after success (0: never)
   * @param {Element} [o.opener]        gets the focus back on close (default: focused element)
   * @param {boolean} [o.qr]           Pay by QR on a wide screen (default: modal only)
   * @param {function} [o.onPaid] @param {function} [o.onClose]
   */
  constructor(o) {
    this.o = { mode: "modal", autoCloseMs: AUTO_CLOSE_MS, ...o };
    this.view = null;
    this.retrying = null;
    this.paidFired = false;
    this.paybill = false; // the customer chose "Pay with Paybill instead"
    this.pendingSince = new Map();
    this.timers = {};
    this.closed = false;
    this.opener = this.o.opener || document.activeElement; // focus returns here on close
    this._render();
    const clientOptions = { ...(window.PaymentAppConfig || {}), ...(this.o.clientOptions || {}) };
    this.client = new PaymentClient({
      orderId: this.o.orderId,
      token: this.o.token,
      baseUrl: this.o.baseUrl || DEFAULT_BASE_URL,
      initialStatus: this.o.initialStatus,
      ...clientOptions,
    });
    // Pay by QR: the modal (it widens itself) and an inline dialog whose page lets it
    // widen (`qr: true`: the hosted page)
    const qr = this.o.qr ?? this.o.mode === "modal";
    this.qrPanel = qr && new QrPanel(this.frame, {
      baseUrl: clientOptions.baseUrl || this.o.baseUrl || DEFAULT_BASE_URL,
      orderId: this.o.orderId,
      token: this.o.token,
    });
    this.client.addEventListener("status", (e) => this._onStatus(e.detail));
    this.client.addEventListener("connection", (e) => this._onConnection(e.detail));
    this.client.addEventListener("error", (e) => this._onFatal(e.detail));
    this._onConnection({ state: this.client.state, previous: null });
    if (this.client.status) this._onStatus({ status: this.client.status, previous: null });
    else this._show("loading");
    this.client.start();
    if (!this.client.status) this.client.refresh().catch((err) => this._onInitialError(err));
  }

  // -- rendering --------------------------------------------------------------------

  _render() {
    const host = document.createElement("div");
    host.className = "paymentapp-host";
    host.dataset.paymentappDialog = this.o.orderId;
    const root = host.attachShadow({ mode: "open" });
    const link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = CSS_URL;
    root.append(link);
    this.host = host;
    this.root = root;
    if (this.o.mode === "inline") {
      this.frame = document.createElement("div");
      this.frame.className = "pa-inline";
      root.append(this.frame);
      (this.o.container || document.body).append(host);
    } else {
      this.frame = document.createElement("dialog");
      this.frame.className = "pa-modal";
      this.frame.setAttribute("aria-label", "Pay with M-Pesa");
      this.frame.addEventListener("cancel", (e) => {
        e.preventDefault();
        this.close();
      });
      this.frame.addEventListener("click", (e) => {
        // A tap on the backdrop closes, except while a prompt is out (easy to do by accident).
        if (e.target === this.frame && this.view !== "pending") this.close();
      });
      root.append(this.frame);
      document.body.append(host);
    }
    this.frame.innerHTML = nobreak(TEMPLATE);
    this.card = this.frame.querySelector(".pa-card");
    this.card.dataset.mode = this.o.mode;
    // Reveal only once the stylesheet is in, so there is no flash of raw markup.
    this.frame.style.visibility = "hidden";
    const reveal = () => (this.frame.style.visibility = "");
    link.addEventListener("load", reveal, { once: true });
    link.addEventListener("error", reveal, { once: true });
    setTimeout(reveal, 1500);
    if (this.o.mode !== "inline") this.frame.showModal();

    this.$ = (sel) => this.frame.querySelector(sel);
    this.phoneForm = new PhoneForm(this.frame, {
      host: this.host,
      timers: this.timers,
      onSubmit: () => this._submit(),
    });
    this.paybillPanel = new PaybillPanel(this.frame, {
      fill: (field, text) => this._fill(field, text),
      announce: (text) => this._announce(text),
    });
    this.$(".pa-close").addEventListener("click", () => this.close());
    this.$(".pa-done").addEventListener("click", () => this.close());
    this.$(".pa-retry").addEventListener("click", () => this._retry());
    for (const button of this.frame.querySelectorAll(".pa-to-paybill")) {
      button.addEventListener("click", () => this._choosePaybill(true));
    }
    this.$(".pa-back").addEventListener("click", () => this._choosePaybill(false));
    if (this.o.mode === "inline") {
      this.$(".pa-close").hidden = true;
      this.$(".pa-done").hidden = true;
    }
    this._fill("description", this.o.description || "");
  }

  _fill(field, text) {
    const value = nobreak(String(text));
    for (const el of this.frame.querySelectorAll(`[data-field="${field}"]`)) el.textContent = value;
  }

  _show(view) {
    const changed = view !== this.view;
    this.view = view;
    this.card.dataset.view = view;
    for (const section of this.frame.querySelectorAll(".pa-view")) {
      const active = section.dataset.view === view;
      section.classList.toggle("is-active", active);
      section.inert = !active;
      section.setAttribute("aria-hidden", String(!active));
    }
    if (!changed) return;
    this.host.dataset.view = view;
    // Move focus to what the customer should read or do next.
    const target =
      view === "form"
        ? this.o.mode === "modal" || this._userActed
          ? this.phoneForm.input
          : null
        : this.frame.querySelector(`.pa-view[data-view="${view}"] .pa-title`);
    if (target && (this.o.mode === "modal" || this._userActed)) {
      requestAnimationFrame(() => target.focus({ preventScroll: true }));
    }
  }

  _clearToasts() {
    this.$(".pa-toasts").replaceChildren();
  }

  _toast(text, tone = "info") {
    const box = this.$(".pa-toasts");
    const toast = document.createElement("div");
    toast.className = `pa-toast pa-toast-${tone}`;
    toast.textContent = nobreak(text);
    box.append(toast);
    while (box.children.length > 1) box.firstElementChild.remove();
    setTimeout(() => toast.classList.add("is-leaving"), 3500);
    setTimeout(() => toast.remove(), 4000);
  }

  // -- status -----------------------------------------------------------------------

  _onStatus({ status, previous }) {
    this._fill("number", status.order_number);
    this._fill("amount", formatKes(status.amount));
    this.phoneForm.setPayText(`Pay ${formatKes(status.amount)}`);
    const payment = status.payment;
    if (payment && payment.phone_masked) this._fill("phone", payment.phone_masked);
    const view = viewFor(status, this.retrying, this.paybill);
    if (payment && payment.id !== this.retrying) this.retrying = null;
    this.paybillPanel.update(status);
    if (this.qrPanel) this.qrPanel.update(status);
    if (previous) this._announceMoney(previous, status);
    clearInterval(this.timers.countdown);
    clearInterval(this.timers.retryWait);
    if (view !== "failed") this._setRetryLabel("");

    if (view === "pending") this._startCountdown(payment);
    if (view === "success") this._paid(status);
    if (view === "failed") this._failed(payment);
    if (view === "closed") {
      this._fill("closed-title", "This order was cancelled");
      this._fill("closed-text", "The shop cancelled this order, so it can't be paid. Nothing was charged.");
    }
    this._show(view);
    this.host.dataset.statusSource = this.client ? this.client.statusSource || "" : "";

    if (previous) this._toastTransition(previous, status, view);
  }

  _toastTransition(previous, status, view) {
    const before = viewFor(previous, null);
    if (before === view && (previous.payment || {}).id === (status.payment || {}).id) return;
    if (view === "pending") {
      this._toast(`Prompt sent to ${status.payment.phone_masked || "your phone"}`);
    } else if (view === "success") this._toast("Payment received", "success");
    else if (view === "failed") this._toast(failureFor(status.payment).title, "error");
    else if (view === "review") this._toast("Payment under review", "warning");
    else if (view === "closed") this._toast("Order cancelled", "error");
  }

  /** Screen readers hear money arrive: "KES 1,450 received" (politely, once). */
  _announceMoney(previous, status) {
    const before = previous.amount_paid || 0;
    const now = status.amount_paid || 0;
    if (!(now > before)) return;
    const due = status.order_status === "paid" ? 0 : status.amount_due || 0;
    this._announce(
      due > 0
        ? `${formatKes(now)} received, ${formatKes(due)} still due`
        : `${formatKes(now)} received`,
    );
  }

  _announce(text) {
    const region = this.$(".pa-announce");
    // Emptied first, so the same words twice are read twice.
    region.textContent = "";
    clearTimeout(this.timers.announce);
    this.timers.announce = setTimeout(() => (region.textContent = nobreak(text)), 100);
  }

  _startCountdown(payment) {
    if (!this.pendingSince.has(payment.id)) {
      // Use the server's start time when our clock roughly agrees, else when we saw it.
      const created = Date.parse(payment.created_at || "");
      const now = Date.now();
      const start = created && created <= now + 5000 && created > now - 600000 ? created : now;
      this.pendingSince.set(payment.id, start);
    }
    const start = this.pendingSince.get(payment.id);
    const fill = this.$(".pa-bar-fill");
    const tick = () => {
      const left = PROMPT_LIFETIME_S - (Date.now() - start) / 1000;
      fill.style.transform = `scaleX(${Math.max(0, left / PROMPT_LIFETIME_S)})`;
      this._fill(
        "countdown",
        left > 0
          ? `Prompt expires in ${formatClock(left)}`
          : "Still waiting for M-Pesa… this page updates by itself.",
      );
    };
    tick();
    this.timers.countdown = setInterval(tick, 1000);
  }

  _paid(status) {
    const payment = status.payment || {};
    // Money that went back (a refunded order stays paid: it was paid once).
    const refund = refundNote(status);
    this._fill("success-title", refund.title);
    this._fill("refund", refund.text);
    this.$(".pa-refund").hidden = !refund.text;
    // Confirmed by STK Query (callback lost) carries no receipt; M-Pesa's SMS has it.
    this._fill("receipt", payment.receipt || "In your M-Pesa SMS");
    this.$(".pa-receipt").classList.toggle("is-missing", !payment.receipt);
    if (!this.paidFired) {
      this.paidFired = true;
      const detail = {
        orderId: status.order_id,
        orderNumber: status.order_number,
        amount: status.amount,
        receipt: payment.receipt || null,
      };
      this.paidDetail = detail;
      if (typeof this.o.onPaid === "function") {
        try {
          this.o.onPaid(detail);
        } catch (err) {
          console.error(err);
        }
      }
      // Bubbles from the host element up to `document`.
      this.host.dispatchEvent(
        new CustomEvent("paymentapp:paid", { detail, bubbles: true, composed: true }),
      );
    }
    if (this.o.mode === "modal" && this.o.autoCloseMs > 0 && !this.timers.autoClose) {
      const closeAt = Date.now() + this.o.autoCloseMs;
      const tick = () => {
        const left = Math.ceil((closeAt - Date.now()) / 1000);
        if (left <= 0) return this.close();
        this._fill("autoclose", `This window closes in ${left} s`);
      };
      tick();
      this.timers.autoClose = setInterval(tick, 250);
    } else if (this.o.mode === "inline") {
      this._fill("autoclose", "You can close this page.");
    }
  }

  _failed(payment) {
    const failure = failureFor(payment);
    this._fill("failure-title", failure.title);
    this._fill("failure-text", failure.text);
    const retry = this.$(".pa-retry");
    retry.disabled = false;
    this._setRetryLabel("");
    if (failure.wait) {
      // One countdown, on the button itself: "Try again in 1:54".
      const since = Date.parse(payment.updated_at || payment.created_at || "") || Date.now();
      const until = Math.min(since, Date.now()) + failure.wait * 1000;
      const tick = () => {
        const left = (until - Date.now()) / 1000;
        retry.disabled = left > 0;
        this._setRetryLabel(left > 0 ? formatClock(left) : "");
        if (left <= 0) clearInterval(this.timers.retryWait);
      };
      tick();
      this.timers.retryWait = setInterval(tick, 1000);
    }
  }

  _setRetryLabel(clock) {
    this.$(".pa-retry").textContent = clock ? `Try again in ${clock}` : "Try again";
  }

  _onConnection({ state, previous }) {
    const badge = this.$(".pa-conn");
    const [label, help] = CONNECTION_LABELS[state];
    badge.dataset.connection = state;
    badge.title = help;
    badge.setAttribute("aria-label", `Connection: ${label}. ${help}`);
    this.$(".pa-conn-label").textContent = label;
    this.host.dataset.connection = state;
    if (this.view === "success") return;
    if (previous === ConnectionState.LIVE && state !== ConnectionState.LIVE) {
      this._toast("Connection lost. Reconnecting…", "warning");
    } else if (
      state === ConnectionState.LIVE &&
      (previous === ConnectionState.RECONNECTING || previous === ConnectionState.OFFLINE) &&
      this._wasLive
    ) {
      this._toast("Back online", "success");
    }
    if (state === ConnectionState.LIVE) this._wasLive = true;
  }

  _onFatal(error) {
    const expired = error.code === "token_expired";
    this.$(".pa-closed-icon").innerHTML = expired ? ICONS.clock : ICONS.ban;
    this._fill("closed-title", expired ? "This payment link has expired" : "Can't open this order");
    this._fill(
      "closed-text",
      expired
        ? "Ask the shop for a new payment link. Nothing was charged."
        : error.message || "This payment link is not valid.",
    );
    if (this.view !== "success") this._show("closed");
  }

  _onInitialError(err) {
    if (this.client.status || this.view !== "loading") return;
    if ([401, 403, 404].includes(err.httpStatus)) this._onFatal(err);
    // Otherwise keep loading: the socket or the polling fallback will bring the status.
  }

  // -- actions ----------------------------------------------------------------------

  async _submit() {
    this._userActed = true;
    this._clearToasts();
    const phone = this.phoneForm.begin();
    if (!phone) return;
    try {
      await this.client.pay(phone);
      this.retrying = null;
      // The live update (or the refresh in `pay`) switches to "check your phone".
      if (this.client.status && this.view === "form") {
        this.client.refresh().catch(() => {});
      }
    } catch (err) {
      if (err.httpStatus === 409) this.retrying = null;
      this.phoneForm.refused(err, phone);
    } finally {
      this.phoneForm.end();
    }
  }

  _retry() {
    this._userActed = true;
    this._clearToasts(); // the failure's toast is old news now
    const payment = this.client.status && this.client.status.payment;
    this.retrying = payment ? payment.id : null;
    clearInterval(this.timers.retryWait);
    this.phoneForm.clearError();
    // A prompt reached this phone seconds ago: M-Pesa (and our server) want a pause
    // before the next one. Count it down on Pay instead of running into a 429.
    const until = retryUntil(payment);
    if (until > Date.now()) {
      this.phoneForm.setCooldown(until, payment.phone_masked, PHONE_COOLDOWN_NOTE, "note");
    }
    this._show("form");
  }

  /** Show the Paybill details (`on`), or go back to the phone form for a prompt. */
  _choosePaybill(on) {
    this._userActed = true;
    this._clearToasts();
    this.paybill = on;
    const status = this.client.status;
    if (!status) return;
    if (!on && viewFor(status, this.retrying) === "failed") return this._retry();
    this._onStatus({ status, previous: null });
  }

  /** Close the dialog (modal) and stop listening. */
  close() {
    if (this.closed) return;
    this.closed = true;
    for (const t of Object.values(this.timers)) clearInterval(t);
    this.client.stop();
    if (this.frame.open) this.frame.close();
    this.host.remove();
    const detail = { orderId: this.o.orderId, paid: this.paidFired };
    if (typeof this.o.onClose === "function") this.o.onClose(detail);
    document.dispatchEvent(new CustomEvent("paymentapp:close", { detail }));
    if (this.opener && typeof this.opener.focus === "function" && this.opener.isConnected) {
      this.opener.focus();
    }
  }
}
