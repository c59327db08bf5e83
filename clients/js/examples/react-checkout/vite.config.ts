import { defineConfig } from "vite";
import { shopBackend } from "./backend";

// VITE_PAYMENTAPP_URL: the paymentapp server the browser talks to (its origin must be in
// paymentapp's CORS_ALLOWED_ORIGINS); PAYMENTAPP_URL and PAYMENTAPP_API_KEY: the same
// server, for the shop's backend.
export default defineConfig({
  plugins: [shopBackend()],
  esbuild: { jsx: "automatic" },
  server: { port: 5173 },
});
