"""M-Pesa: the Daraja client (the built-in simulator is `paymentapp/simulator/`)."""
