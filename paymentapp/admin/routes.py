"""Dashboard pages (filled in by the admin dashboard work)."""

from . import bp  # noqa: F401
