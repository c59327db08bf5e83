// The demo shop's order line under the payment dialog: "fulfilled" appears live once the
// shop's server has received and verified the signed `order.paid` webhook (never on the
// browser's own "paid" event, which anyone could fire).
const line = document.getElementById("shop-fulfilment");
const started = Date.now();

async function check() {
  try {
    const response = await fetch(line.dataset.url, { cache: "no-store", credentials: "omit" });
    const body = await response.json();
    if (body.fulfilled) {
      line.dataset.state = "fulfilled";
      line.textContent = "Fulfilled: Duka received the signed “paid” webhook and is packing your order.";
      return;
    }
  } catch {
    // offline for a moment: ask again
  }
  if (Date.now() - started < 15 * 60 * 1000) setTimeout(check, 1500);
}

if (line) check();
