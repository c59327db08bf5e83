// The copy Flask serves at /static/js/paymentapp-client.js (pay-dialog.js, admin.js and
// the simulator's phone import it): dist/index.js with socket.io-client taken from the
// same server's /vendor/ (paymentapp/vendor.py serves it from node_modules), so pages on
// any origin load it with no bundler and no CDN.
import { readFileSync, writeFileSync } from "node:fs";

const source = new URL("../dist/index.js", import.meta.url);
const target = new URL("../dist/paymentapp-client.js", import.meta.url);
const bare = /from "socket\.io-client";/g;

const code = readFileSync(source, "utf8");
if ((code.match(bare) || []).length !== 1) {
  throw new Error("hosted-build: expected one import of socket.io-client in dist/index.js");
}
writeFileSync(
  target,
  "// Generated from clients/js/packages/client/src/index.ts (make install); do not edit.\n" +
    code.replace(bare, 'from "../../vendor/socket.io.esm.min.js";'),
);
