import { PaymentProvider } from "@paymentapp/react";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { Board } from "./Board";
import { ProductPage } from "./ProductPage";
import "./styles.css";

const PAYMENTAPP_URL = import.meta.env.VITE_PAYMENTAPP_URL || "http://127.0.0.1:5000";

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <PaymentProvider baseUrl={PAYMENTAPP_URL}>
      <nav>
        <a href="/">Shop</a> · <a href="/board">Status board</a>
      </nav>
      {location.pathname === "/board" ? <Board /> : <ProductPage />}
    </PaymentProvider>
  </StrictMode>,
);
