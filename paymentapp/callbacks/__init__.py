"""Callbacks: Daraja posts STK results here; stored first, then applied."""
