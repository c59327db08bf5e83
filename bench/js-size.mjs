// Bundle sizes of the JS packages, min+gzip, without React and socket.io-client (what a
// merchant's bundle gains). Run by bench/react.py, or `node bench/js-size.mjs`, after
// `make install` (it measures the packages' dist/).
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { build } from "vite";

const pkg = (name) =>
  fileURLToPath(new URL(`../clients/js/packages/${name}/dist/index.js`, import.meta.url));
const NEVER = ["react", "react/jsx-runtime", "react-dom", "socket.io-client"];

async function size(entry, external) {
  const [output] = await build({
    configFile: false,
    logLevel: "silent",
    build: {
      write: false,
      minify: "esbuild",
      lib: { entry, formats: ["es"], fileName: "bundle" },
      rollupOptions: { external },
    },
  });
  const code = output.output.map((chunk) => chunk.code || "").join("");
  return { min: code.length, gzip: gzipSync(code, { level: 9 }).length };
}

const results = {
  "@paymentapp/client": await size(pkg("client"), NEVER),
  "@paymentapp/react": await size(pkg("react"), [...NEVER, "@paymentapp/client"]),
  "@paymentapp/react + client": await size(pkg("react"), NEVER),
};
console.log(JSON.stringify(results));
