"""A favicon on every page: `/favicon.ico` answers (browsers ask for it regardless), and
every page's <head> links an icon that exists, so no 404 shows in the console."""

from __future__ import annotations

import re

import pytest

ICON_LINK = re.compile(r'<link rel="icon" href="([^"]+)"[^>]*>')


def test_favicon_ico_is_served(client):
    response = client.get("/favicon.ico")
    body = response.data
    response.close()  # a file response
    assert response.status_code == 200
    assert response.mimetype in ("image/x-icon", "image/vnd.microsoft.icon")
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert "max-age" in response.headers["Cache-Control"]


@pytest.fixture
def pages(make_order):
    """Every HTML page of the shop, the hosted dialog and the simulator."""
    order = make_order(amount=1450)
    return [
        "/",
        f"/pay/{order['id']}?token={order['client_token']}",
        f"/pay/{order['id']}?token=not-a-token",  # the error page
        "/_simulator/phone",
    ]


def test_every_page_links_an_icon_that_exists(client, pages):
    for path in pages:
        html = client.get(path).get_data(as_text=True)
        head = html.split("</head>")[0]
        links = ICON_LINK.findall(head)
        assert links, f"{path} links no icon"
        for href in links:
            assert not href.startswith("data:"), f"{path}: a placeholder icon"
            icon = client.get(href)
            icon.close()  # a file response
            assert icon.status_code == 200, (path, href)
            assert icon.mimetype.startswith("image/"), (path, href, icon.mimetype)
