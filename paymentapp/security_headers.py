"""The security headers of our own pages (the shop, the payment page, the dashboard), and
the one Content-Security-Policy they share: our own scripts, styles and socket only."""

from __future__ import annotations

from flask import Blueprint, Response


def content_security_policy(frame_ancestors: str) -> str:
    """The policy; the only thing that differs between pages is who may frame them."""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; frame-ancestors {frame_ancestors}; base-uri 'none'; "
        "form-action 'self'"
    )


def add_security_headers(
    bp: Blueprint, *, frame_ancestors: str, referrer_policy: str, extra: dict | None = None
) -> None:
    """Give every response of `bp` the policy, no caching and no MIME sniffing (plus
    `extra`); a header the view set itself wins."""
    headers = {
        "Content-Security-Policy": content_security_policy(frame_ancestors),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": referrer_policy,
        "Cache-Control": "no-store",
        **(extra or {}),
    }

    @bp.after_request
    def security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response
