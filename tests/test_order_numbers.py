"""ORD-numbers: unique and short when many processes create orders at the same instant."""

import multiprocessing

import pytest
from sqlalchemy import select

from paymentapp import create_app
from paymentapp.extensions import db
from paymentapp.models import Order
from tests import services
from tests.helpers import base_env

PROCESSES = 6
ORDERS_EACH = 25


def _create_orders(database_url: str, start, results) -> None:
    """Child process: build its own app and create orders as fast as it can."""
    from paymentapp.orders.services import create_order
    from paymentapp.security import create_api_key

    app = create_app({"SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(database_url))
    with app.app_context():
        key, _ = create_api_key("worker")
        start.wait()
        numbers, errors = [], []
        for i in range(ORDERS_EACH):
            try:
                order, _ = create_order(key, {"amount": 10 + i})
                numbers.append(order.number)
            except Exception as exc:  # report, don't hide
                errors.append(repr(exc))
        results.put((numbers, errors))


def _run_concurrently(database_url: str) -> list[str]:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_create_orders, args=(database_url, start, results))
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    start.set()
    collected = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(30)
    errors = [e for _, errs in collected for e in errs]
    assert errors == []
    return [n for numbers, _ in collected for n in numbers]


def _check(numbers: list[str], stored: list[str]) -> None:
    assert len(numbers) == PROCESSES * ORDERS_EACH
    assert len(set(numbers)) == len(numbers), "duplicate order numbers"
    assert sorted(numbers) == sorted(stored)
    assert all(n.startswith("ORD-") and len(n) <= 12 for n in numbers)


@pytest.fixture
def fresh_pg_app():
    url = services.create_pg_database()
    app = create_app({"SOCKETIO_ASYNC_MODE": "threading"}, env=base_env(url))
    with app.app_context():
        db.create_all()
        yield app, url
        db.session.remove()
        db.engine.dispose()
    services.drop_pg_database(url)


@pytest.mark.e2e
def test_concurrent_processes_on_postgresql_get_unique_numbers(fresh_pg_app):
    app, url = fresh_pg_app
    numbers = _run_concurrently(url)
    stored = list(db.session.scalars(select(Order.number)))
    _check(numbers, stored)


def test_concurrent_processes_on_the_suite_database(app, database_url):
    numbers = _run_concurrently(database_url)
    stored = list(db.session.scalars(select(Order.number)))
    _check(numbers, stored)


def test_number_longer_than_account_reference_is_refused(app):
    from paymentapp.models import OrderNumberCounter
    from paymentapp.orders import services as order_services

    postgres = db.engine.dialect.name == "postgresql"
    if postgres:
        before = db.session.scalar(db.text("SELECT last_value FROM order_number_seq"))
        db.session.execute(db.text("SELECT setval('order_number_seq', 99999999)"))
    else:
        db.session.get(OrderNumberCounter, 1).value = 99999999
    db.session.flush()
    try:
        with pytest.raises(RuntimeError, match="exceeds 12"):
            order_services.allocate_order_number()
    finally:
        db.session.rollback()
        if postgres:  # sequences ignore rollback; put it back for the other tests
            db.session.execute(db.text("SELECT setval('order_number_seq', :v)"), {"v": before})
            db.session.commit()
