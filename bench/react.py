"""The React client, measured by hand (`.venv/bin/python bench/react.py`, after `make install`);
the numbers go in docs/react.md, never in tests.

1. Bundle sizes, min+gzip, of @paymentapp/client and @paymentapp/react without React and
   socket.io-client (`bench/js-size.mjs`: Vite's library build, esbuild-minified).
2. Paid → React commit: the example app (clients/js/examples/react-checkout, built with
   Vite, served by `vite preview`) shows its 20-order status board in headless Chromium
   against the production shape (gunicorn with 2 gevent workers, PostgreSQL, Redis).
   For each of N payments the bench posts M-Pesa's success callback and the page records
   when the `payment_update` frame carrying `paid` reached its WebSocket and when React
   committed the row as paid (a MutationObserver on the row). Reported: frame → commit
   (the client's and React's share) and callback POST → commit (the whole path; the
   server emits inside that request, so it bounds emit → commit from above).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import services  # noqa: E402
from tests.e2e import post_callback, running_stack, start_payment  # noqa: E402

EXAMPLE = ROOT / "clients" / "js" / "examples" / "react-checkout"
VITE = ROOT / "node_modules" / ".bin" / "vite"

INSTRUMENT = """
window.__frames = {};
window.__commits = {};
const stamp = () => performance.timeOrigin + performance.now();
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    // Added before socket.io's own onmessage: sees the frame first.
    this.addEventListener("message", (event) => {
      if (typeof event.data !== "string" || !event.data.includes('"order_status":"paid"')) return;
      const match = event.data.match(/"order_id":"([^"]+)"/);
      if (match && !(match[1] in window.__frames)) window.__frames[match[1]] = stamp();
    });
  }
};
new MutationObserver((records) => {
  for (const record of records) {
    const row = record.target;
    if (row.dataset && row.dataset.status === "paid" && !(row.dataset.order in window.__commits)) {
      window.__commits[row.dataset.order] = stamp();
    }
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-status"] });
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: n={len(values)} p50={pct(values, 50):.1f} ms p95={pct(values, 95):.1f} ms "
        f"max={max(values):.1f} ms mean={statistics.mean(values):.1f} ms"
    )


def bundle_sizes() -> dict:
    out = subprocess.run(
        ["node", "bench/js-size.mjs"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def latency(payments: int) -> dict:
    from playwright.sync_api import sync_playwright

    port = services.free_port()
    origin = f"http://127.0.0.1:{port}"
    with (
        tempfile.TemporaryDirectory() as instance,
        tempfile.TemporaryDirectory() as dist,
        running_stack(Path(instance), CORS_ALLOWED_ORIGINS=origin) as stack,
    ):
        env = {
            **os.environ,
            "VITE_PAYMENTAPP_URL": stack.url,
            "PAYMENTAPP_URL": stack.url,
            "PAYMENTAPP_API_KEY": stack.api_key,
        }
        subprocess.run(
            [VITE, "build", "--outDir", dist, "--emptyOutDir", "--logLevel", "warn"],
            cwd=EXAMPLE,
            env=env,
            check=True,
        )
        preview = subprocess.Popen(
            [VITE, "preview", "--outDir", dist, "--host", "127.0.0.1", "--port", str(port)],
            cwd=EXAMPLE,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        frame_to_commit: list[float] = []
        post_to_commit: list[float] = []
        try:
            services.wait_http(origin)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=services.CHROMIUM, args=services.CHROMIUM_ARGS
                )
                page = browser.new_page()
                page.add_init_script(INSTRUMENT)
                orders: list[dict] = []
                while len(frame_to_commit) < payments:
                    if not orders:  # a fresh board of 20
                        with page.expect_response("**/api/board") as created:
                            page.goto(origin + "/board")
                        orders = created.value.json()
                        page.wait_for_selector('[data-testid=socket][data-state="live"]')
                        page.wait_for_function(
                            "document.querySelectorAll('tr[data-connection=live]').length == 20"
                        )
                    order = orders.pop()
                    order_id = order["orderId"]
                    paying = {"id": order_id, "client_token": order["token"]}
                    checkout = start_payment(stack, paying)
                    time.sleep(0.3)  # the pending update has come and gone
                    posted = time.time() * 1000
                    post_callback(stack, checkout, 0, order["amount"])
                    page.wait_for_function(f"'{order_id}' in window.__commits")
                    frame, commit = page.evaluate(
                        f"[window.__frames['{order_id}'], window.__commits['{order_id}']]"
                    )
                    frame_to_commit.append(commit - frame)
                    post_to_commit.append(commit - posted)
                browser.close()
        finally:
            preview.terminate()
            preview.wait(10)
    return {"frame_to_commit": frame_to_commit, "post_to_commit": post_to_commit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=30)
    args = parser.parse_args()

    sizes = bundle_sizes()
    for name, size in sizes.items():
        print(f"{name}: {size['min'] / 1024:.1f} KB min, {size['gzip'] / 1024:.1f} KB min+gzip")
    times = latency(args.payments)
    print(summary("paid frame → React commit", times["frame_to_commit"]))
    print(summary("callback POST → React commit", times["post_to_commit"]))


if __name__ == "__main__":
    main()
