// Phone numbers and money as a customer types and reads them: the twin of
// paymentapp/phones.py (the same rules, the same network table, the same masking).

// 07…, 01…, +254…, 254… (spaces, dashes allowed). Any Kenyan mobile range passes (numbers
// are ported between networks, so an Airtel or Telkom prefix may still be an M-Pesa
// line); `networkOf` only drives a gentle hint.
const KENYAN_MOBILE = /^254(7\d{8}|1[01]\d{7})$/;
export const PHONE_EXAMPLE = "0712 345 678";
export const PHONE_FORMATS = ["07…", "01…", "+254…", "254…"];

export type Network = "Safaricom" | "Airtel" | "Telkom";

// The Communications Authority's allocations, by the three digits after 0/254 (inclusive
// ranges); the same table as NETWORK_RANGES in paymentapp/phones.py.
export const NETWORK_RANGES: ReadonlyArray<readonly [number, number, Network]> = [
  [700, 729, "Safaricom"],
  [740, 743, "Safaricom"],
  [745, 746, "Safaricom"],
  [748, 748, "Safaricom"],
  [757, 759, "Safaricom"],
  [768, 769, "Safaricom"],
  [790, 799, "Safaricom"],
  [110, 115, "Safaricom"],
  [730, 739, "Airtel"],
  [750, 756, "Airtel"],
  [762, 762, "Airtel"],
  [780, 789, "Airtel"],
  [100, 102, "Airtel"],
  [770, 779, "Telkom"],
];

/** Normalise what a customer typed to `2547XXXXXXXX`, or return null. */
export function normalizePhone(raw: unknown): string | null {
  if (typeof raw !== "string") return null;
  let compact = raw.trim().replace(/[\s\-().]/g, "");
  if (compact.startsWith("+")) compact = compact.slice(1);
  if (!/^\d+$/.test(compact)) return null;
  if (compact.startsWith("0") && compact.length === 10) compact = "254" + compact.slice(1);
  else if (compact.length === 9 && "71".includes(compact[0])) compact = "254" + compact;
  return KENYAN_MOBILE.test(compact) ? compact : null;
}

/**
 * The network a number's prefix was allocated to, or null (not a mobile number, or a
 * range not in the table). A ported number keeps its prefix: a hint, never a refusal.
 */
export function networkOf(phone: unknown): Network | null {
  const normalized = normalizePhone(typeof phone === "string" ? phone : String(phone ?? ""));
  if (!normalized) return null;
  const prefix = Number(normalized.slice(3, 6));
  const range = NETWORK_RANGES.find(([low, high]) => low <= prefix && prefix <= high);
  return range ? range[2] : null;
}

/** A short human reason why `raw` is not a phone number (yet), or "" when it is one. */
export function phoneProblem(raw: string | null | undefined): string {
  const example = "0712\u00a0345\u00a0678"; // never split across lines
  const text = (raw || "").trim();
  if (!text) return `Enter your M-Pesa number, e.g. ${example}.`;
  if (normalizePhone(text)) return "";
  if (/[^\d\s\-().+]/.test(text) || text.lastIndexOf("+") > 0) {
    return `Use digits only, e.g. ${example}.`;
  }
  let digits = text.replace(/\D/g, "");
  if (digits.startsWith("254")) digits = digits.slice(3);
  else if (digits.startsWith("0")) digits = digits.slice(1);
  if (!/^(7|1[01])/.test(digits)) return "Use a Kenyan mobile number: 07…, 01…, +254… or 254….";
  if (digits.length < 9) return `Too short: a number has 10 digits, e.g. ${example}.`;
  return `Too long: a number has 10 digits, e.g. ${example}.`;
}

/** `254712345678` → `2547•••••678` (the same masking the server uses). */
export function maskPhone(phone: string): string {
  if (!phone) return phone;
  return phone.slice(0, 4) + "•".repeat(Math.max(0, phone.length - 7)) + phone.slice(-3);
}

/** `1500` → `KES 1,500` (whole shillings). */
export function formatKes(amount: number | null | undefined): string {
  return "KES " + Number(amount || 0).toLocaleString("en-KE", { maximumFractionDigits: 0 });
}
