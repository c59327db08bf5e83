// The payment dialog's markup: its icons and the card with every view (loading, the
// phone form, pending, success, failed, Paybill, review, closed), rendered once into the
// dialog's shadow root; pay-dialog-component.js shows one view at a time.

import { PAYBILL_ICON, PAYBILL_VIEW } from "./pay-dialog-paybill.js";
import { QR_PANEL } from "./pay-dialog-qr.js";

export const ICONS = {
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
};

export const TEMPLATE = `
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
      </form>${QR_PANEL}
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
      <h2 class="pa-title" tabindex="-1" data-field="success-title">Payment received</h2>
      <p class="pa-text">Thank you! <span data-field="amount"></span> paid for order <span data-field="number"></span>.</p>
      <p class="pa-text pa-refund" data-field="refund" hidden></p>
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
      <button type="button" class="pa-button pa-button-secondary pa-to-paybill" hidden>${PAYBILL_ICON}Pay with Paybill instead</button>
    </section>
${PAYBILL_VIEW}

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
