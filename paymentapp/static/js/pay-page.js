// The hosted payment page (/pay/<order_id>?token=…): the dialog, inline, with the
// status snapshot the server rendered into the page (a paid order opens as paid).
import { mount } from "./pay-dialog.js";

const data = JSON.parse(document.getElementById("paymentapp-dialog-data").textContent);
const container = document.getElementById("paymentapp-dialog");
container.replaceChildren();
window.paymentDialog = mount(container, { ...data, qr: true }); // the page widens for it
