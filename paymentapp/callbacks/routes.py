"""STK callback endpoint (filled in by the money-path work)."""

from . import bp  # noqa: F401
