"""M-Pesa: the Daraja client and the built-in Daraja simulator."""
