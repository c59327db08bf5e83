// Admin dashboard: live updates over the /admin Socket.IO namespace, and the idle clock.
//
// The server renders every row; on an event this script re-fetches the page it is on
// (marked as a background request, so it does not count as the admin being active) and
// swaps the live region. `version` decides whether an event is news: an order's
// version only grows, so an event at or below what the page shows is stale and dropped.
import { ConnectionState, openSocket } from "./paymentapp-client.js";

const csrfToken = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const idleMs = Number(document.body.dataset.idleTimeout || 1800) * 1000;
const badge = document.getElementById("live-status");
const BACKGROUND = { "X-Admin-Background": "1" };

function setState(state, text) {
  if (!badge) return;
  badge.dataset.state = state;
  badge.textContent = text;
}

// -- the idle clock: real activity restarts it (at most one ping a minute) -------------------
let lastActivity = Date.now();
let lastPing = Date.now();

async function sessionEnded() {
  // Our own check never counts as activity; 401 means the session is over: reload,
  // and the server sends us to the login page.
  const res = await fetch("/admin/api/session", { headers: BACKGROUND }).catch(() => null);
  if (res && res.status === 401) location.reload();
  return res?.status === 401;
}

function onActivity() {
  lastActivity = Date.now();
  if (Date.now() - lastPing < 60_000) return;
  lastPing = Date.now();
  fetch("/admin/api/ping", { method: "POST", headers: { "X-CSRFToken": csrfToken } })
    .then((res) => res.status === 401 && location.reload())
    .catch(() => {});
}
for (const type of ["pointerdown", "keydown", "wheel", "touchstart", "mousemove"]) {
  addEventListener(type, onActivity, { passive: true });
}
setInterval(() => {
  if (Date.now() - lastActivity > idleMs) sessionEnded();
}, 15_000);

// Forms that need a second thought (cancel order).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset?.confirm;
  if (message && !confirm(message)) event.preventDefault();
});

// -- live region ------------------------------------------------------------------------------
const live = document.getElementById("live");
let requested = 0;
let applied = 0;
let timer = null;

function shownVersion(orderId) {
  if (live.dataset.live === "order") {
    return live.dataset.orderId === orderId ? Number(live.dataset.version) : null;
  }
  const row = live.querySelector(`tr[data-order-id="${CSS.escape(orderId)}"]`);
  return row ? Number(row.dataset.version) : null;
}

function versions(root) {
  const map = new Map();
  for (const row of root.querySelectorAll("tr[data-order-id]")) {
    map.set(row.dataset.orderId, Number(row.dataset.version));
  }
  return map;
}

async function refresh() {
  const mine = ++requested;
  let res;
  try {
    // `data-src`: the page's own address, when this one answered a form (a POST URL)
    res = await fetch(live.dataset.src || location.href, { headers: BACKGROUND });
  } catch {
    return;
  }
  if (res.status === 401) return location.reload();
  if (!res.ok || mine < applied) return; // a newer refresh already landed
  applied = mine;
  const doc = new DOMParser().parseFromString(await res.text(), "text/html");
  const fresh = doc.getElementById("live");
  if (!fresh) return;
  const before = versions(live);
  // A message about this order ("Check status now" found …) is out of date once the
  // order has changed after it was shown: remove it rather than leave it contradicting.
  if (live.dataset.live === "order" && Number(fresh.dataset.version) > Number(live.dataset.version)) {
    for (const message of document.querySelectorAll("main > .flash")) message.remove();
  }
  const open = [...live.querySelectorAll("details[open]")].map((d) => d.id).filter(Boolean);
  // What the admin is typing (a refund note, a receipt) survives the swap, and so does focus.
  const typed = [...live.querySelectorAll("input[id]:not([type=hidden])")]
    .filter((input) => input.value)
    .map((input) => [input.id, input.value]);
  const focused = live.contains(document.activeElement) ? document.activeElement.id : "";
  live.replaceChildren(...fresh.childNodes);
  Object.assign(live.dataset, fresh.dataset);
  for (const id of open) document.getElementById(id)?.setAttribute("open", "");
  for (const [id, value] of typed) {
    const input = document.getElementById(id);
    if (input && live.contains(input) && !input.value) input.value = value;
  }
  if (focused) document.getElementById(focused)?.focus({ preventScroll: true });
  for (const row of live.querySelectorAll("tr[data-order-id]")) {
    const old = before.get(row.dataset.orderId);
    if (old === undefined || old < Number(row.dataset.version)) row.classList.add("changed");
  }
}

function schedule() {
  if (timer) return;
  timer = setTimeout(() => {
    timer = null;
    refresh();
  }, 200);
}

if (live) {
  const socket = openSocket("/admin");
  let connectedBefore = false;

  socket.on("connect", () => {
    setState(ConnectionState.LIVE, "live");
    if (connectedBefore) schedule(); // we may have missed events while away
    connectedBefore = true;
  });
  socket.on("disconnect", (reason) => {
    setState(ConnectionState.RECONNECTING, "reconnecting…");
    // The server hangs up when the session it saw at connect time expires; reconnecting
    // presents the current cookie, which the server accepts or refuses.
    if (reason === "io server disconnect") setTimeout(() => socket.connect(), 500);
  });
  socket.on("connect_error", async () => {
    if (socket.active) return setState(ConnectionState.RECONNECTING, "reconnecting…"); // retries by itself
    setState(ConnectionState.OFFLINE, "offline");
    if (!(await sessionEnded())) setTimeout(() => socket.connect(), 5000);
  });

  // The server's Redis link came back after an outage: updates may have been missed.
  socket.on("resync", () => schedule());
  socket.on("order_created", (order) => {
    if (live.dataset.live === "orders" && live.dataset.acceptsNew === "1") schedule();
  });
  socket.on("payment_update", (snapshot) => {
    const shown = shownVersion(snapshot.order_id);
    if (shown !== null && snapshot.version <= shown) return; // stale or already shown
    if (live.dataset.live === "order" && shown === null) return; // another order
    if (live.dataset.live === "orders" && shown === null && live.dataset.acceptsNew !== "1") {
      return; // not on this page
    }
    schedule();
  });
} else {
  setState("idle", "");
}
