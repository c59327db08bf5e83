"""Customer payment endpoints (filled in by the money-path work)."""

from . import bp  # noqa: F401
