"""Orders: the merchant API and the customer's status snapshot."""
