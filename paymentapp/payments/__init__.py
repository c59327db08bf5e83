"""Payments: the customer starts an STK Push for an order."""
