"""Two things happening to one order at once (docs/payments.md, "Locking and versions"),
checked from outside: real gunicorn (2 gevent workers) on PostgreSQL and Redis, Socket.IO
watchers on both workers, and a real webhook receiver registered for every event.

Each test sends conflicting requests for one order while a gate holds the order's lock
(`tests/e2e.py`, `OrderGate` and `race`): they queue in the order they were sent, and
drain in that order once it opens, on every run. The app itself holds each order lock a
little longer than it needs (`PAYMENTAPP_FAULTS=order.locked=sleep:…`), so the next one
in the queue really waits on the previous one's transaction. Whatever the race, the same
checks (`Case.verify`):

- money: a pending or paid order is paid exactly when the distinct money received (one
  receipt, one movement of money), net of refunds, covers its amount, and its
  `amount_paid` is that sum; a receipt is on exactly one payment; one `order.paid`
  webhook event for a paid order, none for any other; paid and cancelled never both;
- real time: on each client versions never go down, one version is one state on every
  client, and every client ends on the committed state (`GET /api/orders/<id>`);
- plumbing: every callback answered 200 and stored with a final outcome, no 5xx, no
  deadlock in the worker logs.
"""

from __future__ import annotations

import json
import random
import re
import string
import time
from dataclasses import dataclass

import psycopg
import pytest

from tests import services
from tests.e2e import (
    WAIT_S,
    Admin,
    OrderGate,
    Sent,
    Stack,
    Watchers,
    c2b_url,
    callback_url,
    create_admin,
    create_order,
    deliver_webhooks,
    order_details,
    race,
    running_stack,
    start_payment,
)
from tests.helpers import c2b_confirmation, stk_callback
from tests.receiver import Receiver

pytestmark = pytest.mark.e2e

HOLD_S = 0.2  # how long the app holds each order lock it takes (`order.locked=sleep:`)
AMOUNT = 1000
FINAL_OUTCOMES = {"applied", "duplicate", "ignored", "unknown"}
SERVER_ERROR = re.compile(r'" 5\d\d ')


@dataclass
class World:
    stack: Stack
    admin: Admin
    receiver: Receiver


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with (
        Receiver() as receiver,
        running_stack(
            tmp_path_factory.mktemp("instance"),
            PAYMENTAPP_FAULTS=f"order.locked=sleep:{HOLD_S}",
            # no prompt left open expires (1037) behind a later test's back
            MPESA_SIMULATOR_PROMPT_TTL_S="3600",
            # receipts entered by hand count on the admin's word here (the race under
            # test); checked with M-Pesa first: tests/test_receipt_checks.py
            MPESA_RECEIPT_CHECKS="off",
        ) as stack,
    ):
        endpoint = stack.http.post(
            stack.url + "/api/webhook-endpoints",
            json={"url": receiver.url, "events": ["*"]},
            headers=stack.auth,
            timeout=10,
        )
        assert endpoint.status_code == 201, endpoint.text
        admin = create_admin(stack, "ops", "concurrency correct horse")
        try:
            yield World(stack, admin, receiver)
        finally:
            admin.close()


@pytest.fixture
def case(world, request):
    opened = Case(world, seed=request.node.nodeid)
    try:
        yield opened
    finally:
        opened.close()


def one_then_other(one, other, one_first: bool = True) -> list[list]:
    """Two requests as `race` groups: `one` queued first, or `other`."""
    return [[one], [other]] if one_first else [[other], [one]]


def state(snapshot: dict) -> tuple:
    """What a version stands for: the order's status, what it counts as paid, and every
    payment's status (a socket snapshot says `order_status`, the API `status`)."""
    return (
        snapshot.get("order_status", snapshot.get("status")),
        snapshot["amount_paid"],
        tuple(sorted((p["id"], p["status"]) for p in snapshot["payments"])),
    )


class Case:
    """One order, watched on both workers, and what a test did to it."""

    def __init__(self, world: World, seed: str):
        self.world = world
        self.stack = world.stack
        self.rng = random.Random(seed)
        self.watchers = Watchers(self.stack)
        self.group = [ws[0] for ws in self.watchers.on_both_workers()]
        self.acks: dict[int, dict] = {}
        self.log_from = len(self.stack.server.log())
        self.sent: list[Sent] = []
        self.callback_keys: list[str] = []  # CheckoutRequestID / TransID of each callback

    def close(self) -> None:
        self.watchers.close()

    # -- set-up ------------------------------------------------------------------------

    def receipt(self) -> str:
        """An M-Pesa-style receipt (seeded: the same on every run of a test)."""
        alphabet = string.ascii_uppercase + string.digits
        return "T" + "".join(self.rng.choice(alphabet) for _ in range(9))

    def new_order(self, amount: int = AMOUNT, *, prompt: bool = True) -> tuple[dict, str | None]:
        """An order watched from both workers; with `prompt`, an STK prompt open for it."""
        order = create_order(self.stack, amount)
        for watcher in self.group:
            ack = watcher.subscribe(order)
            assert ack["ok"], ack
            self.acks[id(watcher)] = ack["status"]
        checkout = start_payment(self.stack, order) if prompt else None
        return order, checkout

    def paid_without_callback(self, order: dict, checkout: str) -> str:
        """The customer pays the prompt, and its callback is lost: only STK Query (or a
        Paybill echo) can tell. Returns the receipt M-Pesa gave the payment."""
        simulator = self.stack.simulator
        simulator.press(checkout, "lose_callback")
        receipt = simulator.prompt_for(order["number"])["receipt"]
        assert receipt
        return receipt

    # -- the requests --------------------------------------------------------------------

    def stk(self, checkout: str, result_code: int, receipt: str | None = None, amount=AMOUNT):
        """Daraja's STK callback for the prompt (a success carries amount and receipt)."""
        body = stk_callback(
            checkout, result_code, amount=float(amount), receipt=receipt, phone=254708374149
        )
        self.callback_keys.append(checkout)
        url = callback_url(self.stack)
        return f"stk {result_code}", lambda: self.stack.http.post(url, json=body, timeout=30)

    def paybill(self, order: dict, trans_id: str, amount: int = AMOUNT):
        """Daraja's C2B confirmation of a Paybill payment to the order's number."""
        body = c2b_confirmation(order["number"], f"{amount}.00", trans_id)
        self.callback_keys.append(trans_id)
        url = c2b_url(self.stack)
        return f"paybill {trans_id}", lambda: self.stack.http.post(url, json=body, timeout=30)

    def api_cancel(self, order: dict):
        url = f"{self.stack.url}/api/orders/{order['id']}/cancel"
        return "api cancel", lambda: self.stack.http.post(url, headers=self.stack.auth, timeout=30)

    def record_by_hand(self, order: dict, receipt: str, amount: int = AMOUNT):
        """The dashboard's "record payment by receipt" form."""
        path = f"/admin/orders/{order['id']}/payments"
        fields = {"receipt": receipt, "amount": str(amount), "note": "customer showed the SMS"}
        return "hand entry", lambda: self.world.admin.post(path, **fields)

    def status_check(self, payment_id: str):
        """The dashboard's "check with M-Pesa now" (an STK Query)."""
        return "status check", lambda: self.world.admin.post(f"/admin/payments/{payment_id}/check")

    def refund(self, payment_id: str, amount: int, reason: str = "requested_by_customer"):
        """The dashboard's "Record refund" form (money given back outside the app)."""
        path = f"/admin/payments/{payment_id}/refund"
        fields = {"amount": str(amount), "reason": reason, "note": "customer asked"}
        return "refund", lambda: self.world.admin.post(path, **fields)

    def reversal(self, order: dict, key: str | None = None, amount: int | None = None):
        """The merchant API's refund through M-Pesa (Reversal: the whole payment; with an
        `amount`, B2C: part of it)."""
        url = f"{self.stack.url}/api/orders/{order['id']}/refunds"
        headers = {**self.stack.auth, **({"Idempotency-Key": key} if key else {})}
        body = {"reason": "requested_by_customer", **({"amount": amount} if amount else {})}
        label = "b2c" if amount else "reversal"
        return label, lambda: self.stack.http.post(url, json=body, headers=headers, timeout=30)

    def refunds_settled(self, order: dict) -> list[dict]:
        """The order's refunds, once none is still waiting for M-Pesa's result."""
        url = f"{self.stack.url}/api/orders/{order['id']}/refunds"

        def settled():
            made = self.stack.http.get(url, headers=self.stack.auth, timeout=10).json()
            refunds = made["refunds"]
            return refunds if all(r["status"] in ("succeeded", "failed") for r in refunds) else None

        return services.wait_for(settled, "the refunds' results", WAIT_S)

    def race(self, order: dict, *groups) -> list[Sent]:
        """`tests.e2e.race` behind a gate on this order; every answer is kept for `verify`."""
        gate = OrderGate(self.stack, order["id"])
        try:
            sent = race(gate, *groups)
        finally:
            gate.close()
        self.sent += sent
        return sent

    # -- the checks ----------------------------------------------------------------------

    def verify(
        self, order: dict, money: dict[str, int], refunded: int = 0, reversed_: int = 0
    ) -> dict:
        """Every invariant of the module docstring; returns the committed order.
        `reversed_`: what went back through M-Pesa after the order was paid (a refunded
        order stays paid: it was paid once)."""
        for sent in self.sent:
            assert sent.error is None, f"{sent.label}: {sent.error!r}"
            assert sent.status < 500, f"{sent.label}: {sent.status} {sent.response.text[:500]}"
            if sent.label.startswith(("stk", "paybill")):
                assert sent.status == 200 and str(sent.json().get("ResultCode")) == "0", (
                    f"{sent.label}: {sent.status} {sent.response.text[:200]}"
                )
        final = order_details(self.stack, order["id"])
        self._check_money(final, money, refunded, reversed_)
        self._check_webhooks(final)
        self._check_clients(final)
        self._check_records()
        log = self.stack.server.log()[self.log_from :]
        assert "deadlock detected" not in log, log[-4000:]
        assert not [line for line in log.splitlines() if SERVER_ERROR.search(line)], log[-4000:]
        return final

    def _check_money(
        self, final: dict, money: dict[str, int], refunded: int, reversed_: int = 0
    ) -> None:
        receipts = [p["receipt"] for p in final["payments"] if p["receipt"]]
        assert len(receipts) == len(set(receipts)), f"a receipt on two payments: {final}"
        if final["status"] == "cancelled":
            # money for a cancelled order is held on it, or waits unmatched for review
            assert set(receipts) <= set(money) and final["paid_at"] is None, final
            return
        assert set(receipts) == set(money), f"money received {money}, on record {receipts}"
        net = sum(money.values()) - refunded
        assert (final["status"] == "paid") == (net >= final["amount"]), (
            f"{final['status']} with {net} KES received net of refunds: {final}"
        )
        net -= reversed_
        assert final["amount_paid"] == net, f"amount_paid {final['amount_paid']} ≠ {net}: {final}"

    def _events(self, order_id: str) -> dict[str, dict]:
        """The webhook events the receiver got for this order, de-duplicated by id."""
        events = {}
        for received in self.world.receiver.received:
            event = json.loads(received.body)
            if (event["data"].get("order") or {}).get("id") == order_id:
                events[event["id"]] = event
        return events

    def _check_webhooks(self, final: dict) -> None:
        deliver_webhooks(self.stack)
        kinds = [e["type"] for e in self._events(final["id"]).values()]
        paid = kinds.count("order.paid")
        assert paid == (1 if final["status"] == "paid" else 0), (
            f"{paid} order.paid events for a {final['status']} order: {kinds}"
        )
        assert not (paid and "order.cancelled" in kinds), f"paid and cancelled: {kinds}"

    def _check_clients(self, final: dict) -> None:
        committed = final["version"]
        for watcher in self.group:
            ack = self.acks[id(watcher)]
            services.wait_for(
                lambda w=watcher, a=ack: (
                    max([a["version"]] + [u["version"] for u in w.updates]) >= committed
                ),
                f"worker {watcher.pid}'s client to reach version {committed}",
                WAIT_S,
            )
        time.sleep(0.3)  # a straggling (stale) emit would arrive now
        by_version: dict[int, set] = {committed: {state(final)}}
        statuses = {final["status"]}
        for watcher in self.group:
            seen = [self.acks[id(watcher)]] + [
                u for u in watcher.updates if u["order_id"] == final["id"]
            ]
            versions = [s["version"] for s in seen]
            assert versions == sorted(versions), (
                f"worker {watcher.pid}'s client saw versions go down: {versions}"
            )
            shown = seen[0]
            for snapshot in seen:
                by_version.setdefault(snapshot["version"], set()).add(state(snapshot))
                statuses.add(snapshot["order_status"])
                if snapshot["version"] > shown["version"]:  # what a dialog does
                    shown = snapshot
            assert (shown["version"], state(shown)) == (committed, state(final)), (
                f"worker {watcher.pid}'s client shows v{shown['version']} {state(shown)}, "
                f"committed v{committed} {state(final)}"
            )
            if "amount_refunded" in final:
                assert shown.get("amount_refunded") == final["amount_refunded"], shown
        mixed = {v: s for v, s in by_version.items() if len(s) > 1}
        assert not mixed, f"one version, several states: {mixed}"
        assert not {"paid", "cancelled"} <= statuses, f"paid and cancelled: {statuses}"

    def _check_records(self) -> None:
        """Every stored callback of this test has a final outcome (none left `received`)."""
        url = services.psycopg_url(self.stack.env["DATABASE_URL"])
        with psycopg.connect(url) as conn:
            for key in set(self.callback_keys):
                outcomes = [
                    row[0]
                    for row in conn.execute(
                        "SELECT outcome FROM callback_records WHERE strpos(body, %s) > 0", (key,)
                    )
                ]
                assert len(outcomes) >= self.callback_keys.count(key), (key, outcomes)
                assert set(outcomes) <= FINAL_OUTCOMES, f"callbacks for {key}: {outcomes}"


# -- one prompt, two results --------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [(0, 1032), (1032, 0), (0, 1037), (1037, 0)],
    ids=["success-then-cancel", "cancel-then-success", "success-then-1037", "1037-then-success"],
)
def test_a_success_and_a_failure_for_one_prompt(case, first, second):
    """A success wins whenever it comes: `completed` is never downgraded, and a success
    after a cancel or a timeout still pays (the money moved)."""
    order, checkout = case.new_order()
    receipt = case.receipt()
    case.race(order, [case.stk(checkout, first, receipt)], [case.stk(checkout, second, receipt)])
    final = case.verify(order, {receipt: AMOUNT})
    assert final["status"] == "paid"
    assert [p["status"] for p in final["payments"]] == ["completed"]


@pytest.mark.parametrize("echo_first", [False, True], ids=["stk-first", "echo-first"])
def test_an_stk_success_and_its_own_paybill_echo(case, echo_first):
    """Daraja sends the STK payment to the C2B confirmation URL too (TransID = the STK
    receipt): one movement of money, counted once, whichever comes first."""
    order, checkout = case.new_order()
    receipt = case.receipt()
    stk, echo = case.stk(checkout, 0, receipt), case.paybill(order, receipt)
    case.race(order, *one_then_other(echo, stk, echo_first))
    final = case.verify(order, {receipt: AMOUNT})
    assert final["status"] == "paid" and len(final["payments"]) == 1


def test_two_paybill_halves_at_once(case):
    order, _ = case.new_order(prompt=False)
    halves = {case.receipt(): AMOUNT // 2, case.receipt(): AMOUNT // 2}
    case.race(order, [case.paybill(order, trans_id, amount) for trans_id, amount in halves.items()])
    final = case.verify(order, halves)
    assert final["status"] == "paid"


def test_an_stk_success_and_a_separate_paybill_payment_at_once(case):
    """The customer pays the prompt and, at the same moment, pays by Paybill: two
    movements of money, both on record, and the order is paid once."""
    order, checkout = case.new_order()
    by_stk, by_paybill = case.receipt(), case.receipt()
    case.race(order, [case.stk(checkout, 0, by_stk), case.paybill(order, by_paybill)])
    final = case.verify(order, {by_stk: AMOUNT, by_paybill: AMOUNT})
    assert final["status"] == "paid"


def test_a_storm_of_copies_of_one_success(case):
    """Ten copies of one success callback at once: one payment, one `order.paid`, and
    the copies that waited re-send the committed state, never an older one."""
    order, checkout = case.new_order()
    receipt = case.receipt()
    case.race(order, [case.stk(checkout, 0, receipt) for _ in range(10)])
    final = case.verify(order, {receipt: AMOUNT})
    assert final["status"] == "paid" and len(final["payments"]) == 1


# -- money that arrives by two roads --------------------------------------------------------


@pytest.mark.parametrize("at_once", [False, True], ids=["query-then-echo", "query-and-echo"])
def test_a_prompt_settled_by_query_and_its_paybill_echo(case, at_once):
    """The callback is lost, STK Query completes the prompt (no receipt), and the Paybill
    echo of that very money arrives: it gives the prompt its receipt, it is not a second
    payment."""
    order, checkout = case.new_order()
    receipt = case.paid_without_callback(order, checkout)
    prompt = order_details(case.stack, order["id"])["payments"][0]["id"]
    check, echo = case.status_check(prompt), case.paybill(order, receipt)
    if at_once:
        case.race(order, [check], [echo])
    else:
        case.race(order, [check])
        case.race(order, [echo])
    final = case.verify(order, {receipt: AMOUNT})
    assert final["status"] == "paid"
    assert [p["receipt"] for p in final["payments"]] == [receipt]


@pytest.mark.parametrize("by_hand_first", [True, False], ids=["hand-first", "callback-first"])
def test_a_receipt_recorded_by_hand_then_the_callback_and_the_query(case, by_hand_first):
    """An admin records the receipt from the customer's SMS while the prompt is still
    pending; then the prompt's own callback (same receipt) and an STK Query say the same
    money again: counted once."""
    order, checkout = case.new_order()
    receipt = case.paid_without_callback(order, checkout)
    by_hand, callback = case.record_by_hand(order, receipt), case.stk(checkout, 0, receipt)
    sent = case.race(order, *one_then_other(by_hand, callback, by_hand_first))
    hand = next(s for s in sent if s.label == "hand entry")
    assert hand.status in (302, 422), hand.status  # recorded, or refused as already known
    prompt = order_details(case.stack, order["id"])["payments"][0]["id"]
    case.race(order, [case.status_check(prompt)])
    final = case.verify(order, {receipt: AMOUNT})
    assert final["status"] == "paid"


# -- cancel and refund racing money ---------------------------------------------------------


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-first", "payment-first"])
@pytest.mark.parametrize("road", ["paybill", "late-stk"])
def test_an_api_cancel_and_a_payment_at_once(case, road, cancel_first):
    """Whichever takes the order first wins, and the other sees what it did: a cancelled
    order is never paid (the money is held for a refund), a paid one never cancelled."""
    if road == "paybill":
        order, _ = case.new_order(prompt=False)
    else:  # the customer cancelled the prompt, then paid after all
        order, checkout = case.new_order()
        case.race(order, [case.stk(checkout, 1032)])
    receipt = case.receipt()
    payment = case.paybill(order, receipt) if road == "paybill" else case.stk(checkout, 0, receipt)
    cancel = case.api_cancel(order)
    sent = case.race(order, *one_then_other(cancel, payment, cancel_first))
    final = case.verify(order, {receipt: AMOUNT})
    cancelled = next(s for s in sent if s.label == "api cancel")
    if cancel_first:
        assert final["status"] == "cancelled" and cancelled.status == 200, cancelled.json()
    else:
        assert final["status"] == "paid", final
        assert cancelled.status == 409 and cancelled.json()["error"]["code"] == "order_paid"


@pytest.mark.parametrize("refund_first", [True, False], ids=["refund-first", "payment-first"])
def test_a_refund_and_a_new_payment_at_once(case, refund_first):
    """KES 600 of 1,000 arrived; the admin gives the 600 back while the customer pays the
    remaining 400. Refund first: 400 received net, still pending. Payment first: the
    order is paid and may not drop below its amount, so the refund is refused (409)."""
    order, _ = case.new_order(prompt=False)
    first, second = case.receipt(), case.receipt()
    case.race(order, [case.paybill(order, first, 600)])
    part = next(p for p in order_details(case.stack, order["id"])["payments"])
    refund, payment = case.refund(part["id"], 600), case.paybill(order, second, 400)
    sent = case.race(order, *one_then_other(refund, payment, refund_first))
    answer = next(s for s in sent if s.label == "refund")
    assert answer.status in (302, 303, 409), (answer.status, answer.response.text[:500])
    refunded = 600 if answer.status != 409 else 0
    final = case.verify(order, {first: 600, second: 400}, refunded=refunded)
    assert final.get("amount_refunded") == refunded, final
    if refund_first:
        assert refunded == 600 and final["status"] == "pending" and final["amount_paid"] == 400
    else:
        # the dashboard form's answer to the service's 409 `not_refundable`: the order
        # page again, with the status and what may still go back
        assert answer.status == 409, answer.status
        assert final["status"] == "paid" and final["amount_paid"] == AMOUNT


# -- refunds through M-Pesa (docs/refunds.md) ---------------------------------------------


def test_two_reversals_of_one_paid_order_at_once_give_back_once(case):
    """Two refund clicks (or two merchant retries without an Idempotency-Key) at once:
    one refund is asked of M-Pesa, the other is refused (409), and the money goes back
    once; the order stays paid."""
    order, checkout = case.new_order()
    simulator = case.stack.simulator
    simulator.press(checkout, "accept")  # M-Pesa must know the receipt to reverse it
    case.callback_keys.append(checkout)
    services.wait_for(
        lambda: order_details(case.stack, order["id"])["status"] == "paid", "paid", WAIT_S
    )
    receipt = simulator.prompt_for(order["number"])["receipt"]
    sent = case.race(order, [case.reversal(order)], [case.reversal(order)])
    statuses = sorted(s.status for s in sent)
    assert statuses == [202, 409], [(s.status, s.response.text[:300]) for s in sent]
    refused = next(s for s in sent if s.status == 409).json()["error"]["code"]
    assert refused in ("refund_in_progress", "not_refundable"), refused
    [refund] = case.refunds_settled(order)
    assert refund["status"] == "succeeded" and refund["amount"] == AMOUNT, refund
    final = case.verify(order, {receipt: AMOUNT}, reversed_=AMOUNT)
    assert final["status"] == "paid" and final["amount_refunded"] == AMOUNT, final


def test_two_partial_b2c_refunds_at_once_pay_back_once(case):
    """Two partial refunds of one payment at once (B2C to the prompted phone): one is paid,
    the other refused (409); the money goes back once and the order stays paid."""
    order, checkout = case.new_order()
    case.stack.simulator.press(checkout, "accept")
    case.callback_keys.append(checkout)
    services.wait_for(
        lambda: order_details(case.stack, order["id"])["status"] == "paid", "paid", WAIT_S
    )
    receipt = case.stack.simulator.prompt_for(order["number"])["receipt"]
    sent = case.race(order, [case.reversal(order, amount=300)], [case.reversal(order, amount=300)])
    statuses = sorted(s.status for s in sent)
    assert statuses == [202, 409], [(s.status, s.response.text[:300]) for s in sent]
    assert next(s for s in sent if s.status == 409).json()["error"]["code"] == "refund_in_progress"
    [refund] = case.refunds_settled(order)
    assert refund["status"] == "succeeded" and refund["method"] == "b2c", refund
    final = case.verify(order, {receipt: AMOUNT}, reversed_=300)
    assert final["status"] == "paid" and final["amount_refunded"] == 300, final


def test_a_reversal_and_a_cancel_of_a_part_paid_order_at_once(case):
    """KES 400 of 1,000 came by Paybill; the merchant refunds it while cancelling the
    order. Whatever the order, no 5xx, the order ends cancelled, and the 400 goes back
    once (a cancelled order's money may be refunded)."""
    order, _ = case.new_order(prompt=False)
    stack = case.stack
    paid = stack.http.post(
        f"{stack.url}/_simulator/api/c2b/pay",
        json={"account": order["number"], "amount": 400},
        timeout=10,
    )
    assert paid.status_code == 202, paid.text
    receipt = paid.json()["payment"]["trans_id"]
    case.callback_keys.append(receipt)
    services.wait_for(
        lambda: order_details(stack, order["id"])["amount_paid"] == 400, "the part payment", WAIT_S
    )
    sent = case.race(order, [case.reversal(order)], [case.api_cancel(order)])
    by_label = {s.label: s for s in sent}
    assert by_label["reversal"].status == 202, by_label["reversal"].response.text[:300]
    assert by_label["api cancel"].status == 200, by_label["api cancel"].response.text[:300]
    [refund] = case.refunds_settled(order)
    assert refund["status"] == "succeeded" and refund["amount"] == 400, refund
    final = case.verify(order, {receipt: 400}, reversed_=400)
    assert final["status"] == "cancelled" and final["amount_refunded"] == 400, final
