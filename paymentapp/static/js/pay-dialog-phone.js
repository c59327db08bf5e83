// The payment dialog's phone form: checks the number as it is typed (and hints at the
// network its prefix belongs to), holds Pay while M-Pesa needs a pause before the next
// prompt (counting down on the button itself), and says why a payment was refused.

import { maskPhone, networkOf, normalizePhone, phoneProblem } from "./paymentapp-client.js";
import {
  COOLDOWN_REASONS,
  PUSH_FAILURE,
  formatClock,
  nobreak,
  withoutCountdown,
} from "./pay-dialog-states.js";

export class PhoneForm {
  /**
   * @param {Element} frame  the dialog's rendered card
   * @param {object} dialog
   * @param {Element} dialog.host       gets `data-network`, the typed number's network
   * @param {object} dialog.timers      the dialog's timers (it clears them all on close)
   * @param {function} dialog.onSubmit  the customer asked to pay
   */
  constructor(frame, { host, timers, onSubmit }) {
    this.frame = frame;
    this.host = host;
    this.timers = timers;
    this.cooldown = null; // {until, phoneMasked, reason, tone}: Pay waits until then
    this.busy = false;
    this.payText = "Pay";
    this.form = frame.querySelector(".pa-form");
    this.input = frame.querySelector("#pa-phone");
    this.payButton = frame.querySelector(".pa-pay");
    this.payLabel = frame.querySelector(".pa-pay-label");
    this.fieldError = frame.querySelector(".pa-field-error");
    this.networkHint = frame.querySelector(".pa-network");
    this.formError = frame.querySelector(".pa-form-error");
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      onSubmit();
    });
    this.input.addEventListener("input", () => {
      this.validate(false);
      if (this.cooldown) this.tickCooldown(); // a different number need not wait
    });
    this.input.addEventListener("blur", () => this.input.value && this.validate(true));
  }

  /** Pay's label when nothing holds it ("Pay KES 1,450"). */
  setPayText(text) {
    this.payText = text;
    if (!this.cooldown) this.payLabel.textContent = this.payText;
  }

  /**
   * The customer pressed Pay: the number to send (normalised), with the form held while
   * it goes; or null when it may not go (the form says why, or Pay is counting down).
   */
  begin() {
    if (!this.validate(true)) {
      this.input.focus();
      return null;
    }
    if (this.coolingDown()) return null; // Pay is disabled; Enter in the field lands here
    this.formError.textContent = "";
    this.formError.classList.remove("is-note");
    this.form.classList.add("is-busy");
    this.busy = true;
    this.payButton.disabled = true;
    this.input.readOnly = true;
    return normalizePhone(this.input.value);
  }

  /** The payment request is over, either way: the form is free again. */
  end() {
    this.form.classList.remove("is-busy");
    this.busy = false;
    this.input.readOnly = false;
    this.tickCooldown();
  }

  /** Forget the last refusal (trying again starts clean). */
  clearError() {
    this.formError.textContent = "";
    this.formError.classList.remove("is-note");
    delete this.formError.dataset.cooldown;
  }

  /** Check the typed number; `showAll` also shows a problem that typing could still fix. */
  validate(showAll) {
    const value = this.input.value;
    const problem = phoneProblem(value);
    const complete = !problem;
    this.input.closest(".pa-input").classList.toggle("is-valid", complete);
    this.showNetwork(complete ? networkOf(value) : null);
    // While typing, only complain once it cannot become valid or the user left the field.
    const tooLong = value.replace(/\D/g, "").length > 12;
    const show = problem && (showAll || tooLong || /[^\d\s\-().+]/.test(value));
    this.showFieldError(show ? problem : "");
    return complete;
  }

  /** A gentle hint, never a refusal: ported numbers keep their old prefix. */
  showNetwork(network) {
    const other = network && network !== "Safaricom";
    const article = other && /^[AEIOU]/.test(network) ? "an" : "a";
    const text = other
      ? `This looks like ${article} ${network} number; the M-Pesa prompt needs a Safaricom line.`
      : "";
    if (this.networkHint.textContent !== nobreak(text)) this.networkHint.textContent = nobreak(text);
    this.frame.querySelector(".pa-help").classList.toggle("has-network", Boolean(text));
    this.host.dataset.network = network || "";
  }

  /** The field's own error ("" clears it). */
  showFieldError(text) {
    // The error takes the hint's place, so the Pay button below does not move.
    this.fieldError.textContent = text;
    this.frame.querySelector(".pa-help").classList.toggle("has-error", Boolean(text));
    this.input.setAttribute("aria-invalid", text ? "true" : "false");
    this.input.closest(".pa-input").classList.toggle("is-invalid", Boolean(text));
  }

  /** Say why the server refused to send a prompt to `phone` (a PaymentError). */
  refused(err, phone) {
    if (err.httpStatus === 422) {
      this.showFieldError((err.fields && err.fields.phone) || err.message || phoneProblem(""));
      this.input.focus();
    } else if (err.httpStatus === 409) {
      this.formError.textContent = err.message;
    } else if (err.httpStatus === 429) {
      const reason =
        withoutCountdown(err.message) || COOLDOWN_REASONS[err.code] || "Too many attempts.";
      const until = Date.now() + (err.retryAfter || 10) * 1000;
      this.setCooldown(until, maskPhone(phone), reason, "error");
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
  setCooldown(until, phoneMasked, reason, tone) {
    clearInterval(this.timers.cooldown);
    this.cooldown = { until, phoneMasked, reason, tone };
    this.tickCooldown();
    if (this.cooldown) this.timers.cooldown = setInterval(() => this.tickCooldown(), 250);
  }

  /** Must Pay wait? For the number that is cooling down (any number when we cannot tell). */
  coolingDown() {
    const c = this.cooldown;
    if (!c || c.until <= Date.now()) return false;
    const typed = normalizePhone(this.input.value);
    return !c.phoneMasked || !typed || maskPhone(typed) === c.phoneMasked;
  }

  /** Bring Pay's label, state and the reason below up to date with the cooldown. */
  tickCooldown() {
    const c = this.cooldown;
    if (c && c.until <= Date.now()) {
      clearInterval(this.timers.cooldown);
      this.timers.cooldown = null;
      this.cooldown = null;
      if (this.formError.dataset.cooldown) this.formError.textContent = "";
    }
    const waiting = this.coolingDown();
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
}
