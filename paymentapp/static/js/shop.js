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
    if (button.getAttribute("aria-disabled") === "true") return; // a double click
    button.setAttribute("aria-disabled", "true"); // not `disabled`: that would drop the focus
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
        opener: button,
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
      button.removeAttribute("aria-disabled");
      button.classList.remove("is-busy");
    }
  });
}
