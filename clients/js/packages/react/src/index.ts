// @paymentapp/react: React bindings of @paymentapp/client.
export {
  PaymentProvider,
  usePaymentSocket,
  type ClientOptions,
  type PaymentProviderProps,
  type PaymentSocket,
  type SocketState,
} from "./context.js";
export {
  usePaymentStatus,
  type OrderSummary,
  type PaymentStatus,
  type UsePaymentStatusOptions,
} from "./usePaymentStatus.js";
export { PaymentDialog, type PaymentDialogProps } from "./PaymentDialog.js";
export type { CloseDetail, PaidDetail } from "./dialog.js";
export {
  ConnectionState,
  PaymentError,
  formatKes,
  maskPhone,
  normalizePhone,
  phoneProblem,
  type PaymentSnapshot,
  type RefundStatusName,
  type StatusSnapshot,
} from "@paymentapp/client";
