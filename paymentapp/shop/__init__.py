"""Demo shop and the hosted payment dialog page (`/pay/<order_id>?token=…`)."""
