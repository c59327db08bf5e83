// Demo shop: "Buy" creates the order on the server, then opens the payment dialog.
// Without JavaScript the form posts and the server redirects to the hosted dialog.
import { open } from "./pay-dialog.js";

const notice = document.querySelector(".shop-notice");

function say(html, tone) {
  notice.hidden = false;
  notice.className = `shop-notice shop-notice-${tone}`;
  notice.replaceChildren(...html);
}

for (const form of document.querySelectorAll(".buy-form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    button.classList.add("is-busy");
    try {
      const response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error ? body.error.message : "Could not create the order.");
      open({
        orderId: body.order_id,
        token: body.token,
        description: body.description,
        onPaid(detail) {
          const strong = document.createElement("strong");
          strong.textContent = `Order ${detail.orderNumber} is paid.`;
          say([strong, ` M-Pesa receipt ${detail.receipt || "pending"}. Thank you!`], "success");
        },
      });
    } catch (err) {
      say([err.message], "error");
    } finally {
      button.disabled = false;
      button.classList.remove("is-busy");
    }
  });
}
