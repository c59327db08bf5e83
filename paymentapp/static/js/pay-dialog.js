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

import {
  ConnectionState,
  PaymentClient,
  formatKes,
  maskPhone,
  networkOf,
  phoneProblem,
  normalizePhone,
} from "./paymentapp-client.js";

const CSS_URL = new URL("../css/pay-dialog.css", import.meta.url).href;
// The client needs the server's URL: by default, the server this dialog was loaded from.
const DEFAULT_BASE_URL = new URL("../../", import.meta.url).href.replace(/\/$/, "");
const PROMPT_LIFETIME_S = 120; // an STK prompt lives about two minutes on the handset
const AUTO_CLOSE_MS = 5000;
const CODE17_WAIT_S = 120;

// What each Daraja result code means to the customer, in plain words.
const FAILURES = {
  1032: {
    title: "Payment cancelled",
    text: "The M-Pesa prompt was cancelled on your phone. Nothing was charged.",
  },
  1: {
    title: "Not enough money in M-Pesa",
    text: "Your M-Pesa balance is too low for this payment. Top up, then try again.",
  },
  2001: {
    title: "Wrong M-Pesa PIN",
    text: "The PIN entered on your phone was not correct. Nothing was charged.",
  },
  1037: {
    title: "No answer from your phone",
    text: "The prompt expired before it was answered. Keep your phone on and unlocked, then try again.",
  },
  1019: {
    title: "The prompt expired",
    text: "The M-Pesa prompt timed out before it was answered. Nothing was charged.",
  },
  17: {
    title: "Too soon to pay again",
    text: "M-Pesa blocks a repeat payment of the same amount within 2 minutes. Nothing was charged.",
    wait: CODE17_WAIT_S,
  },
  1001: {
    title: "Another M-Pesa request is open",
    text: "Your phone is busy with another M-Pesa prompt. Close it, wait a minute, then try again.",
  },
  2: { title: "Amount too small", text: "M-Pesa refused the amount as below its minimum." },
  3: { title: "Amount too large", text: "The amount is above your M-Pesa transaction limit." },
  4: { title: "Daily limit reached", text: "This payment would pass your M-Pesa daily limit." },
  8: { title: "Limit reached", text: "The merchant's M-Pesa account cannot take this amount now." },
  1025: {
    title: "The prompt did not reach your phone",
    text: "M-Pesa could not show the prompt on your phone. Try again.",
  },
  9999: {
    title: "The prompt did not reach your phone",
    text: "M-Pesa could not show the prompt on your phone. Try again.",
  },
};
const TIMEOUT_FAILURE = FAILURES[1037];
// The push itself failed (no result code): the prompt never reached the phone. The
// payment's result_desc is then our server's own note, never something M-Pesa said.
const PUSH_FAILURE = {
  title: "The prompt was not sent",
  text: "We could not send the M-Pesa prompt to your phone, so nothing was charged. Please try again.",
};
// Why Pay is disabled for a few seconds after a prompt reached this phone.
const PHONE_COOLDOWN_NOTE = "M-Pesa needs a few seconds between prompts to the same phone.";

const CONNECTION_LABELS = {
  [ConnectionState.CONNECTING]: ["Connecting", "Connecting to the payment server…"],
  [ConnectionState.LIVE]: ["Live", "Updates arrive the moment M-Pesa answers."],
  [ConnectionState.RECONNECTING]: [
    "Reconnecting",
    "The live connection dropped; checking for updates every few seconds.",
  ],
  [ConnectionState.OFFLINE]: [
    "Offline",
    "The payment server cannot be reached right now; retrying.",
  ],
};

const ICONS = {
  phone:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="6" y="2" width="12" height="20" rx="2.5"/><path d="M10.5 18.5h3"/></svg>',
  check: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M5 12.5l4.5 4.5L19 7.5"/></svg>',
  cross: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M7 7l10 10M17 7L7 17"/></svg>',
  clock:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/></svg>',
  search:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><circle cx="11" cy="11" r="6.5"/><path d="M16 16l4.5 4.5"/></svg>',
  lock: '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="5" y="10.5" width="14" height="10" rx="2"/><path d="M8 10.5V8a4 4 0 018 0v2.5"/></svg>',
  flag: '<svg class="pa-flag" viewBox="0 0 30 20"><rect width="30" height="20" fill="#fff"/><rect width="30" height="5.6" fill="#000"/><rect y="7" width="30" height="6" fill="#bb0000"/><rect y="14.4" width="30" height="5.6" fill="#006600"/><ellipse cx="15" cy="10" rx="3.2" ry="6" fill="#bb0000" stroke="#fff" stroke-width="0.6"/><path d="M15 4.5v11" stroke="#000" stroke-width="0.8"/></svg>',
  ban: '<svg viewBox="0 0 24 24" aria-hidden="true"><circle cx="12" cy="12" r="9"/><path d="M5.6 5.6l12.8 12.8"/></svg>',
  close: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6.5 6.5l11 11M17.5 6.5l-11 11"/></svg>',
  copy: '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="8.5" y="8.5" width="11" height="11" rx="2"/><path d="M15.5 8.5V6a1.5 1.5 0 00-1.5-1.5H6A1.5 1.5 0 004.5 6v8A1.5 1.5 0 006 15.5h2.5"/></svg>',
  paybill:
    '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="3" y="5" width="18" height="14" rx="2.5"/><path d="M3 9.5h18M7 14.5h4"/></svg>',
};
const COPIED_MS = 2500;
// What each copy button copies, as the customer types it into M-Pesa's Pay Bill screen.
const COPY_NAMES = { business: "Business number", account: "Account number", amount: "Amount" };

/** A copy button; its accessible name says what it copies ("Copy account number"). */
function copyButton(what) {
  const name = COPY_NAMES[what].toLowerCase();
  return `<button type="button" class="pa-copy" data-copy="${what}">${ICONS.copy}<span class="pa-copy-label">Copy</span><span class="pa-sr-only"> ${name}</span></button>`;
}

const TEMPLATE = `
<div class="pa-card" part="card">
  <header class="pa-header">
    <div class="pa-brand"><span class="pa-mark" aria-hidden="true">M</span><span><span class="pa-brand-long">Pay with </span>M-Pesa</span></div>
    <span class="pa-conn" data-connection="connecting" title="">
      <span class="pa-dot" aria-hidden="true"></span><span class="pa-conn-label">Connecting</span>
    </span>
    <button type="button" class="pa-close" aria-label="Close payment dialog">${ICONS.close}</button>
  </header>
  <div class="pa-summary">
    <div class="pa-summary-row">
      <span class="pa-label">Order</span>
      <span class="pa-order-number" data-field="number">…</span>
    </div>
    <div class="pa-amount" data-field="amount">&nbsp;</div>
    <div class="pa-description" data-field="description"></div>
  </div>
  <div class="pa-stage">
    <section class="pa-view" data-view="loading" aria-busy="true">
      <div class="pa-spinner" aria-hidden="true"></div>
      <p class="pa-muted">Loading your order…</p>
    </section>

    <section class="pa-view" data-view="form">
      <form class="pa-form" novalidate>
        <label class="pa-field-label" for="pa-phone">M-Pesa phone number</label>
        <div class="pa-input">
          <span class="pa-prefix" aria-hidden="true">${ICONS.flag}<span>KE</span></span>
          <input id="pa-phone" name="phone" type="tel" inputmode="tel" autocomplete="tel"
                 placeholder="0712 345 678" maxlength="20" required
                 aria-describedby="pa-phone-hint pa-phone-network pa-phone-error">
          <span class="pa-valid" aria-hidden="true">${ICONS.check}</span>
        </div>
        <div class="pa-help">
          <p class="pa-hint" id="pa-phone-hint">Starts with 07…, 01…, +254… or 254…</p>
          <p class="pa-network" id="pa-phone-network" aria-live="polite"></p>
          <p class="pa-field-error" id="pa-phone-error" aria-live="polite"></p>
        </div>
        <p class="pa-form-error" role="alert"></p>
        <button type="submit" class="pa-button pa-pay">
          <span class="pa-button-spinner" aria-hidden="true"></span>
          <span class="pa-pay-label">Pay</span>
        </button>
        <p class="pa-fineprint">You will get an M-Pesa prompt on your phone. Enter your PIN to approve.</p>
      </form>
      <button type="button" class="pa-link pa-to-paybill" hidden>Pay with Paybill instead</button>
    </section>

    <section class="pa-view" data-view="pending">
      <div class="pa-icon pa-icon-phone">${ICONS.phone}<span class="pa-ping" aria-hidden="true"></span></div>
      <h2 class="pa-title" tabindex="-1">Check your phone</h2>
      <p class="pa-text">We sent an M-Pesa prompt to <strong data-field="phone">your phone</strong>. Enter your M-Pesa PIN to pay.</p>
      <dl class="pa-prompt">
        <div><dt>Account no.</dt><dd data-field="number">…</dd></div>
        <div><dt>Amount</dt><dd data-field="amount">…</dd></div>
      </dl>
      <div class="pa-countdown">
        <div class="pa-bar" aria-hidden="true"><span class="pa-bar-fill"></span></div>
        <p class="pa-countdown-text pa-muted" data-field="countdown">Prompt expires in 2:00</p>
      </div>
    </section>

    <section class="pa-view" data-view="success">
      <div class="pa-icon pa-icon-success">${ICONS.check}</div>
      <h2 class="pa-title" tabindex="-1">Payment received</h2>
      <p class="pa-text">Thank you! <span data-field="amount"></span> paid for order <span data-field="number"></span>.</p>
      <div class="pa-receipt">
        <span class="pa-label">M-Pesa receipt</span>
        <span class="pa-receipt-code" data-field="receipt">—</span>
      </div>
      <p class="pa-muted pa-autoclose" data-field="autoclose"></p>
      <button type="button" class="pa-button pa-done">Done</button>
    </section>

    <section class="pa-view" data-view="failed">
      <div class="pa-icon pa-icon-failed">${ICONS.cross}</div>
      <h2 class="pa-title" tabindex="-1" data-field="failure-title">Payment failed</h2>
      <p class="pa-text" data-field="failure-text"></p>
      <button type="button" class="pa-button pa-retry">Try again</button>
      <button type="button" class="pa-button pa-button-secondary pa-to-paybill" hidden>${ICONS.paybill}Pay with Paybill instead</button>
    </section>

    <section class="pa-view" data-view="paybill">
      <h2 class="pa-title" tabindex="-1">Pay with Paybill</h2>
      <p class="pa-text">In M-Pesa, choose Lipa na M-Pesa → Pay Bill and enter:</p>
      <dl class="pa-paybill">
        <div class="pa-pb-row">
          <dt>Business no.</dt>
          <dd><span class="pa-pb-value" data-field="business-number">…</span>${copyButton("business")}</dd>
        </div>
        <div class="pa-pb-row">
          <dt>Account no.</dt>
          <dd><span class="pa-pb-value" data-field="number">…</span>${copyButton("account")}</dd>
        </div>
        <div class="pa-pb-row">
          <dt>Amount</dt>
          <dd><span class="pa-pb-value" data-field="amount-due">…</span>${copyButton("amount")}</dd>
        </div>
      </dl>
      <div class="pa-pb-status">
        <p class="pa-muted pa-pb-note">This page turns to “Payment received” by itself.</p>
        <p class="pa-pb-progress" data-field="paybill-progress" hidden></p>
      </div>
      <button type="button" class="pa-link pa-back">Back to the M-Pesa prompt</button>
    </section>

    <section class="pa-view" data-view="review">
      <div class="pa-icon pa-icon-review">${ICONS.search}</div>
      <h2 class="pa-title" tabindex="-1">We're checking this payment</h2>
      <p class="pa-text">M-Pesa reported a payment that does not match this order. Please don't pay again: the shop will confirm your order shortly.</p>
    </section>

    <section class="pa-view" data-view="closed">
      <div class="pa-icon pa-icon-failed pa-closed-icon">${ICONS.ban}</div>
      <h2 class="pa-title" tabindex="-1" data-field="closed-title">This order is closed</h2>
      <p class="pa-text" data-field="closed-text">This order can no longer be paid.</p>
    </section>
  </div>
  <footer class="pa-footer">${ICONS.lock}<span>Secure M-Pesa checkout</span></footer>
  <p class="pa-sr-only pa-announce" role="status" aria-live="polite"></p>
</div>
<div class="pa-toasts" role="status" aria-live="polite" aria-atomic="false"></div>`;

/** Has the order's offer run out (`expires_at`)? Paybill money after that is refunded. */
function orderExpired(status) {
  const at = Date.parse(status.expires_at || "");
  return Boolean(at) && at <= Date.now();
}

/** Part of the amount arrived by Paybill; the rest is still due (the same Pay Bill). */
function partlyPaid(status) {
  return (
    status.order_status === "pending" &&
    status.amount_paid > 0 &&
    status.amount_due > 0 &&
    !orderExpired(status)
  );
}

/** Can this order still be paid by Paybill (the server told us where)? */
function paybillOffered(status) {
  return Boolean(
    status && status.paybill && status.order_status === "pending" && !orderExpired(status),
  );
}

/** Where the status says the dialog should be (`paybill`: the customer chose Paybill). */
function viewFor(status, retryingPaymentId, paybill = false) {
  if (!status) return "loading";
  if (status.order_status === "paid") return "success";
  const payment = status.payment;
  const partial = partlyPaid(status);
  if (payment && payment.needs_review && !partial) return "review";
  if (status.order_status === "cancelled") return "closed";
  if (partial || (paybill && paybillOffered(status))) return "paybill";
  if (!payment || payment.id === retryingPaymentId) return "form";
  if (payment.status === "pending") return "pending";
  if (payment.status === "completed") return "review"; // money moved but order not paid
  return "failed";
}

function failureFor(payment) {
  const code = payment.result_code;
  const fromMpesa = code !== null && code !== undefined; // a callback's or STK Query's result
  if (fromMpesa && FAILURES[code]) return FAILURES[code];
  if (payment.status === "timeout") return TIMEOUT_FAILURE;
  if (payment.status === "cancelled") return FAILURES[1032];
  if (!fromMpesa) return PUSH_FAILURE;
  // A result code we have no plain words for: quote Daraja's own ResultDesc, as is (its
  // punctuation stays inside the quotes; nothing is added after them).
  const said = String(payment.result_desc || "").trim();
  return {
    title: "Payment failed",
    text: said
      ? `The payment did not go through. M-Pesa said: “${said}”`
      : "M-Pesa could not complete the payment.",
  };
}

/** When this payment's phone may get the next prompt (ms), from the server's `retry_at`;
 * never further off than the cooldown itself, whatever this browser's clock says. */
function retryUntil(payment) {
  const at = Date.parse((payment && payment.retry_at) || "");
  if (!at) return 0;
  const created = Date.parse(payment.created_at || "");
  const length = created && at > created ? at - created : 0;
  return Math.min(at, Date.now() + length);
}

/** The sentences of a server message that carry no number (the countdown is ours). */
function withoutCountdown(message) {
  return String(message || "")
    .split(/(?<=[.!?])\s+/)
    .filter((sentence) => sentence && !/\d/.test(sentence))
    .join(" ");
}

const COOLDOWN_REASONS = {
  phone_busy: "A prompt was just sent to this phone.",
  mpesa_busy: "M-Pesa is busy right now.",
};

/** "M-Pesa" never splits across lines (a non-breaking hyphen). */
function nobreak(text) {
  return text.replace(/M-Pesa/g, "M\u2011Pesa").replace(/M-PESA/g, "M\u2011PESA");
}

function formatClock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

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
   * @param {function} [o.onPaid] @param {function} [o.onClose]
   */
  constructor(o) {
    this.o = { mode: "modal", autoCloseMs: AUTO_CLOSE_MS, ...o };
    this.view = null;
    this.retrying = null;
    this.cooldown = null; // {until, phoneMasked, reason, tone}: Pay waits until then
    this.busy = false;
    this.payText = "Pay";
    this.paidFired = false;
    this.paybill = false; // the customer chose "Pay with Paybill instead"
    this.copyValues = {};
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
    this.form = this.$(".pa-form");
    this.input = this.$("#pa-phone");
    this.payButton = this.$(".pa-pay");
    this.payLabel = this.$(".pa-pay-label");
    this.fieldError = this.$(".pa-field-error");
    this.networkHint = this.$(".pa-network");
    this.formError = this.$(".pa-form-error");
    this.$(".pa-close").addEventListener("click", () => this.close());
    this.$(".pa-done").addEventListener("click", () => this.close());
    this.$(".pa-retry").addEventListener("click", () => this._retry());
    for (const button of this.frame.querySelectorAll(".pa-to-paybill")) {
      button.addEventListener("click", () => this._choosePaybill(true));
    }
    this.$(".pa-back").addEventListener("click", () => this._choosePaybill(false));
    for (const button of this.frame.querySelectorAll(".pa-copy")) {
      button.addEventListener("click", () => this._copy(button));
    }
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this._submit();
    });
    this.input.addEventListener("input", () => {
      this._validate(false);
      if (this.cooldown) this._tickCooldown(); // a different number need not wait
    });
    this.input.addEventListener("blur", () => this.input.value && this._validate(true));
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
          ? this.input
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
    this.payText = `Pay ${formatKes(status.amount)}`;
    if (!this.cooldown) this.payLabel.textContent = this.payText;
    const payment = status.payment;
    if (payment && payment.phone_masked) this._fill("phone", payment.phone_masked);
    const view = viewFor(status, this.retrying, this.paybill);
    if (payment && payment.id !== this.retrying) this.retrying = null;
    this._paybillDetails(status);
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

  /** The Paybill details (business no., account no., amount due) and what is still due. */
  _paybillDetails(status) {
    const offered = paybillOffered(status);
    for (const button of this.frame.querySelectorAll(".pa-to-paybill")) button.hidden = !offered;
    if (!status.paybill) return;
    const due = typeof status.amount_due === "number" ? status.amount_due : status.amount;
    this.copyValues = {
      business: String(status.paybill.business_number),
      account: String(status.paybill.account || status.order_number),
      amount: String(due),
    };
    this._fill("business-number", this.copyValues.business);
    this._fill("amount-due", formatKes(due));
    const partial = partlyPaid(status);
    // What is still due takes the note's place (one slot: nothing below it moves).
    this.$(".pa-pb-progress").hidden = !partial;
    this.$(".pa-pb-note").classList.toggle("is-unavailable", partial);
    this._fill(
      "paybill-progress",
      partial
        ? `${formatKes(status.amount_paid)} received, ${formatKes(status.amount_due)} still due`
        : "",
    );
    // A prompt asks for the whole amount: once part is paid, the rest goes by Paybill too.
    // (Invisible, not removed: the card keeps its height.)
    this.$(".pa-back").classList.toggle("is-unavailable", partial);
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

  _validate(showAll) {
    const value = this.input.value;
    const problem = phoneProblem(value);
    const complete = !problem;
    this.input.closest(".pa-input").classList.toggle("is-valid", complete);
    this._networkHint(complete ? networkOf(value) : null);
    // While typing, only complain once it cannot become valid or the user left the field.
    const tooLong = value.replace(/\D/g, "").length > 12;
    const show = problem && (showAll || tooLong || /[^\d\s\-().+]/.test(value));
    this._fieldError(show ? problem : "");
    return complete;
  }

  /** A gentle hint, never a refusal: ported numbers keep their old prefix. */
  _networkHint(network) {
    const other = network && network !== "Safaricom";
    const article = other && /^[AEIOU]/.test(network) ? "an" : "a";
    const text = other
      ? `This looks like ${article} ${network} number; the M-Pesa prompt needs a Safaricom line.`
      : "";
    if (this.networkHint.textContent !== nobreak(text)) this.networkHint.textContent = nobreak(text);
    this.$(".pa-help").classList.toggle("has-network", Boolean(text));
    this.host.dataset.network = network || "";
  }

  _fieldError(text) {
    // The error takes the hint's place, so the Pay button below does not move.
    this.fieldError.textContent = text;
    this.$(".pa-help").classList.toggle("has-error", Boolean(text));
    this.input.setAttribute("aria-invalid", text ? "true" : "false");
    this.input.closest(".pa-input").classList.toggle("is-invalid", Boolean(text));
  }

  async _submit() {
    this._userActed = true;
    this._clearToasts();
    if (!this._validate(true)) {
      this.input.focus();
      return;
    }
    if (this._coolingDown()) return; // Pay is disabled; Enter in the field lands here
    this.formError.textContent = "";
    this.formError.classList.remove("is-note");
    this.form.classList.add("is-busy");
    this.busy = true;
    this.payButton.disabled = true;
    this.input.readOnly = true;
    const phone = normalizePhone(this.input.value);
    try {
      await this.client.pay(phone);
      this.retrying = null;
      // The live update (or the refresh in `pay`) switches to "check your phone".
      if (this.client.status && this.view === "form") {
        this.client.refresh().catch(() => {});
      }
    } catch (err) {
      this._payError(err, phone);
    } finally {
      this.form.classList.remove("is-busy");
      this.busy = false;
      this.input.readOnly = false;
      this._tickCooldown();
    }
  }

  _payError(err, phone) {
    if (err.httpStatus === 422) {
      this._fieldError((err.fields && err.fields.phone) || err.message || phoneProblem(""));
      this.input.focus();
    } else if (err.httpStatus === 409) {
      this.retrying = null;
      this.formError.textContent = err.message;
    } else if (err.httpStatus === 429) {
      const reason =
        withoutCountdown(err.message) || COOLDOWN_REASONS[err.code] || "Too many attempts.";
      const until = Date.now() + (err.retryAfter || 10) * 1000;
      this._setCooldown(until, maskPhone(phone), reason, "error");
    } else if (err.httpStatus === 502) {
      // Our server's own sentence ("M-Pesa could not be reached. Please try again."), or
      // M-Pesa's refusal, quoted as theirs.
      this.formError.textContent = nobreak(
        err.code === "mpesa_refused"
          ? `M-Pesa refused the request: “${String(err.message || "").trim()}”`
          : err.message || PUSH_FAILURE.text,
      );
    } else if (err.httpStatus === 0) {
      this.formError.textContent = "Could not reach the payment server. Check your connection and try again.";
    } else {
      this.formError.textContent = err.message;
    }
  }

  /**
   * Hold Pay until `until` (ms) for this (masked) phone: the button itself counts down
   * ("Pay in 0:07"), `reason` says why, once, with no second countdown in it.
   */
  _setCooldown(until, phoneMasked, reason, tone) {
    clearInterval(this.timers.cooldown);
    this.cooldown = { until, phoneMasked, reason, tone };
    this._tickCooldown();
    if (this.cooldown) this.timers.cooldown = setInterval(() => this._tickCooldown(), 250);
  }

  _coolingDown() {
    const c = this.cooldown;
    if (!c || c.until <= Date.now()) return false;
    const typed = normalizePhone(this.input.value);
    return !c.phoneMasked || !typed || maskPhone(typed) === c.phoneMasked;
  }

  _tickCooldown() {
    const c = this.cooldown;
    if (c && c.until <= Date.now()) {
      clearInterval(this.timers.cooldown);
      this.timers.cooldown = null;
      this.cooldown = null;
      if (this.formError.dataset.cooldown) this.formError.textContent = "";
    }
    const waiting = this._coolingDown();
    this.payButton.disabled = this.busy || waiting;
    const label = waiting ? `Pay in ${formatClock((c.until - Date.now()) / 1000)}` : this.payText;
    if (this.payLabel.textContent !== label) this.payLabel.textContent = label;
    const reason = waiting ? nobreak(c.reason) : "";
    if (waiting && this.formError.textContent !== reason) {
      this.formError.textContent = reason;
      this.formError.classList.toggle("is-note", c.tone === "note");
    } else if (!waiting && this.formError.dataset.cooldown) {
      this.formError.textContent = "";
      this.formError.classList.remove("is-note");
    }
    if (waiting) this.formError.dataset.cooldown = "1";
    else delete this.formError.dataset.cooldown;
  }

  _retry() {
    this._userActed = true;
    this._clearToasts(); // the failure's toast is old news now
    const payment = this.client.status && this.client.status.payment;
    this.retrying = payment ? payment.id : null;
    clearInterval(this.timers.retryWait);
    this.formError.textContent = "";
    this.formError.classList.remove("is-note");
    delete this.formError.dataset.cooldown;
    // A prompt reached this phone seconds ago: M-Pesa (and our server) want a pause
    // before the next one. Count it down on Pay instead of running into a 429.
    const until = retryUntil(payment);
    if (until > Date.now()) {
      this._setCooldown(until, payment.phone_masked, PHONE_COOLDOWN_NOTE, "note");
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

  async _copy(button) {
    const what = button.dataset.copy;
    const value = this.copyValues[what] || "";
    let copied = false;
    try {
      await navigator.clipboard.writeText(value);
      copied = true;
    } catch {
      // No clipboard (an http page, a refused permission): select it for a manual copy.
      const text = button.parentElement.querySelector(".pa-pb-value");
      const selection = window.getSelection();
      selection.selectAllChildren(text);
      try {
        copied = document.execCommand("copy");
      } catch {
        copied = false;
      }
    }
    const label = button.querySelector(".pa-copy-label");
    button.classList.toggle("is-copied", copied);
    label.textContent = copied ? "Copied" : "Selected";
    this._announce(
      copied ? `${COPY_NAMES[what]} copied` : `${COPY_NAMES[what]} selected: copy it from there`,
    );
    clearTimeout(button._reset);
    button._reset = setTimeout(() => {
      button.classList.remove("is-copied");
      label.textContent = "Copy";
    }, COPIED_MS);
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
