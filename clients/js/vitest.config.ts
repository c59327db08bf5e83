// The JS tests of clients/js (`npm test` at the repository root): jsdom, and the client
// package from its source, so no build is needed first.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  cacheDir: fileURLToPath(new URL("../../node_modules/.vite/clients-js", import.meta.url)),
  resolve: {
    alias: {
      "@paymentapp/client": fileURLToPath(new URL("packages/client/src/index.ts", import.meta.url)),
    },
  },
  esbuild: { jsx: "automatic" },
  test: {
    environment: "jsdom",
    include: ["packages/*/test/**/*.test.{ts,tsx}"],
    restoreMocks: true,
  },
});
