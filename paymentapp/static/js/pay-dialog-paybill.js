// The payment dialog's Paybill panel: the business number, account number and amount
// to type into M-Pesa's Pay Bill screen, each with a copy button, and what is still due
// once part of the money has arrived. The dialog shows the panel (the customer chose
// Paybill, or money came in by Paybill); this module fills it and runs its buttons.

import { formatKes } from "./paymentapp-client.js";
import { paybillOffered, partlyPaid } from "./pay-dialog-states.js";

export const PAYBILL_ICON =
  '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="3" y="5" width="18" height="14" rx="2.5"/><path d="M3 9.5h18M7 14.5h4"/></svg>';
const COPY_ICON =
  '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="8.5" y="8.5" width="11" height="11" rx="2"/><path d="M15.5 8.5V6a1.5 1.5 0 00-1.5-1.5H6A1.5 1.5 0 004.5 6v8A1.5 1.5 0 006 15.5h2.5"/></svg>';
const COPIED_MS = 2500;
// What each copy button copies, as the customer types it into M-Pesa's Pay Bill screen.
const COPY_NAMES = { business: "Business number", account: "Account number", amount: "Amount" };

/** A copy button; its accessible name says what it copies ("Copy account number"). */
function copyButton(what) {
  const name = COPY_NAMES[what].toLowerCase();
  return `<button type="button" class="pa-copy" data-copy="${what}">${COPY_ICON}<span class="pa-copy-label">Copy</span><span class="pa-sr-only"> ${name}</span></button>`;
}

// The panel's view in the dialog's card (pay-dialog-markup.js places it).
export const PAYBILL_VIEW = `
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
    </section>`;

export class PaybillPanel {
  /**
   * @param {Element} frame  the dialog's rendered card (the panel and its offer buttons)
   * @param {object} dialog
   * @param {function} dialog.fill      fill(field, text): every `[data-field=field]`
   * @param {function} dialog.announce  announce(text): say it to screen readers, politely
   */
  constructor(frame, { fill, announce }) {
    this.frame = frame;
    this.fill = fill;
    this.announce = announce;
    this.copyValues = {};
    for (const button of frame.querySelectorAll(".pa-copy")) {
      button.addEventListener("click", () => this.copy(button));
    }
  }

  /** The Paybill details (business no., account no., amount due) and what is still due. */
  update(status) {
    const offered = paybillOffered(status);
    for (const button of this.frame.querySelectorAll(".pa-to-paybill")) button.hidden = !offered;
    if (!status.paybill) return;
    const due = typeof status.amount_due === "number" ? status.amount_due : status.amount;
    this.copyValues = {
      business: String(status.paybill.business_number),
      account: String(status.paybill.account || status.order_number),
      amount: String(due),
    };
    this.fill("business-number", this.copyValues.business);
    this.fill("amount-due", formatKes(due));
    const partial = partlyPaid(status);
    // What is still due takes the note's place (one slot: nothing below it moves).
    this.frame.querySelector(".pa-pb-progress").hidden = !partial;
    this.frame.querySelector(".pa-pb-note").classList.toggle("is-unavailable", partial);
    this.fill(
      "paybill-progress",
      partial
        ? `${formatKes(status.amount_paid)} received, ${formatKes(status.amount_due)} still due`
        : "",
    );
    // A prompt asks for the whole amount: once part is paid, the rest goes by Paybill too.
    // (Invisible, not removed: the card keeps its height.)
    this.frame.querySelector(".pa-back").classList.toggle("is-unavailable", partial);
  }

  /** Copy one value to the clipboard, or select it for a manual copy when there is none. */
  async copy(button) {
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
    this.announce(
      copied ? `${COPY_NAMES[what]} copied` : `${COPY_NAMES[what]} selected: copy it from there`,
    );
    clearTimeout(button._reset);
    button._reset = setTimeout(() => {
      button.classList.remove("is-copied");
      label.textContent = "Copy";
    }, COPIED_MS);
  }
}
