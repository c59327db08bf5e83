// The payment dialog's reading of a status snapshot: which view it shows (`viewFor`),
// what a failed payment, a refused prompt or the connection badge says in plain words,
// and when the phone may get the next prompt. No DOM here: pay-dialog-component.js
// renders what these decide.

import { ConnectionState, formatKes } from "./paymentapp-client.js";

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
export const PUSH_FAILURE = {
  title: "The prompt was not sent",
  text: "We could not send the M-Pesa prompt to your phone, so nothing was charged. Please try again.",
};
// Why Pay is disabled for a few seconds after a prompt reached this phone.
export const PHONE_COOLDOWN_NOTE = "M-Pesa needs a few seconds between prompts to the same phone.";

// The connection badge: its label and what it means, per client connection state.
export const CONNECTION_LABELS = {
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

/** Has the order's offer run out (`expires_at`)? Paybill money after that is refunded. */
function orderExpired(status) {
  const at = Date.parse(status.expires_at || "");
  return Boolean(at) && at <= Date.now();
}

/** Part of the amount arrived by Paybill; the rest is still due (the same Pay Bill). */
export function partlyPaid(status) {
  return (
    status.order_status === "pending" &&
    status.amount_paid > 0 &&
    status.amount_due > 0 &&
    !orderExpired(status)
  );
}

/** Can this order still be paid by Paybill (the server told us where)? */
export function paybillOffered(status) {
  return Boolean(
    status && status.paybill && status.order_status === "pending" && !orderExpired(status),
  );
}

/** Where the status says the dialog should be (`paybill`: the customer chose Paybill). */
export function viewFor(status, retryingPaymentId, paybill = false) {
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

/** The success view's title, and what it says of money that went back. */
export function refundNote(status) {
  const back = formatKes(status.amount_refunded || 0);
  switch (status.refund_status) {
    case "refunded":
      return { title: "Payment refunded", text: `${back} went back to your M-Pesa.` };
    case "partially_refunded":
      return { title: "Payment received", text: `${back} of it went back to your M-Pesa.` };
    case "refund_pending":
      return { title: "Payment received", text: "A refund is on its way to your M-Pesa." };
    default:
      return { title: "Payment received", text: "" };
  }
}

/** The title and words for a failed payment: M-Pesa's result code in plain words. */
export function failureFor(payment) {
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
export function retryUntil(payment) {
  const at = Date.parse((payment && payment.retry_at) || "");
  if (!at) return 0;
  const created = Date.parse(payment.created_at || "");
  const length = created && at > created ? at - created : 0;
  return Math.min(at, Date.now() + length);
}

/** The sentences of a server message that carry no number (the countdown is ours). */
export function withoutCountdown(message) {
  return String(message || "")
    .split(/(?<=[.!?])\s+/)
    .filter((sentence) => sentence && !/\d/.test(sentence))
    .join(" ");
}

// A 429's reason by its error code, for when the server's own message is all countdown.
export const COOLDOWN_REASONS = {
  phone_busy: "A prompt was just sent to this phone.",
  prompt_open: "A payment prompt is open on this phone: answer or cancel it there, then pay.",
  mpesa_busy: "M-Pesa is busy right now.",
  too_many_prompts: "This order has sent all the prompts it may for now: pay with Paybill instead, or wait.",
  rate_limited: "Too many payment prompts were started from here.",
};

/** "M-Pesa" never splits across lines (a non-breaking hyphen). */
export function nobreak(text) {
  return text.replace(/M-Pesa/g, "M\u2011Pesa").replace(/M-PESA/g, "M\u2011PESA");
}

/** `125` → `2:05`, for countdowns. */
export function formatClock(seconds) {
  const s = Math.max(0, Math.ceil(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
