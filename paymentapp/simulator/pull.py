"""Pull Transactions as the simulator answers them: registration (any nominated number,
remembered per shortcode) and the query, which lists the simulator's Paybill payments
that moved money (`completed`, whether or not their confirmation was sent) between
`StartDate` and `EndDate` (EAT), a page of `PAGE` at `OffSetValue`. Shapes: see
`mpesa/pull.py`."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask import jsonify, request
from sqlalchemy import select

from ..extensions import db
from ..mpesa.formats import EAT, TIMESTAMP_FORMAT
from . import bp
from .c2b import set_setting
from .daraja import daraja_error, take_fault, token_ok
from .models import sim_c2b_payments, sim_settings

INVALID = "400.002.02"
PAGE = 100
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def _date(value) -> datetime | None:
    try:
        return datetime.strptime(str(value), DATE_FORMAT).replace(tzinfo=EAT)
    except ValueError:
        return None


@bp.post("/pulltransactions/v1/register")
def pull_register():
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not str(body.get("ShortCode", "")).strip():
        return daraja_error(400, INVALID, "Bad Request - Invalid ShortCode")
    if body.get("RequestType") != "Pull":
        return daraja_error(400, INVALID, "Bad Request - Invalid RequestType")
    set_setting(f"pull:{body['ShortCode']}", str(body.get("NominatedNumber") or "")[:32])
    return jsonify(
        {
            "ResponseRefID": f"sim-{secrets.token_hex(6)}",
            "ResponseStatus": "1000",
            "ShortCode": str(body["ShortCode"]),
            "ResponseDescription": "Shortcode registered successfully",
        }
    )


@bp.post("/pulltransactions/v1/query")
def pull_query():
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("pull"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, INVALID, "Bad Request - Invalid JSON")
    shortcode = str(body.get("ShortCode", "")).strip()
    registered = db.session.scalar(
        select(sim_settings.c.value).where(sim_settings.c.name == f"pull:{shortcode}")
    )
    if registered is None:
        return daraja_error(400, INVALID, "Bad Request - ShortCode not registered for Pull")
    start, end = _date(body.get("StartDate")), _date(body.get("EndDate"))
    offset = str(body.get("OffSetValue", "0"))
    if start is None or end is None or not offset.isdigit():
        return daraja_error(400, INVALID, "Bad Request - Invalid StartDate, EndDate or OffSet")
    low, high = start.strftime(TIMESTAMP_FORMAT), end.strftime(TIMESTAMP_FORMAT)
    rows = db_rows(shortcode, low, high, int(offset))
    return jsonify(
        {
            "ResponseRefID": f"sim-{secrets.token_hex(6)}",
            "ResponseCode": "1000",
            "ResponseMessage": "Success",
            "Response": [
                [
                    {
                        "transactionId": row.trans_id,
                        "trxDate": datetime.strptime(row.trans_time, TIMESTAMP_FORMAT)
                        .replace(tzinfo=EAT)
                        .isoformat(),
                        "msisdn": int(row.msisdn),
                        "sender": "UNKNOWN",
                        "transactiontype": "c2b-pay-bill-debit",
                        "billreference": row.account,
                        "amount": f"{row.amount:.1f}",
                        "organizationname": "paymentapp simulator",
                    }
                    for row in rows
                ]
            ],
        }
    )


def db_rows(shortcode: str, low: str, high: str, offset: int):
    """The completed payments on `shortcode` with TransTime in [low, high] (EAT text)."""
    return db.session.execute(
        select(sim_c2b_payments)
        .where(
            sim_c2b_payments.c.shortcode == shortcode,
            sim_c2b_payments.c.state == "completed",
            sim_c2b_payments.c.trans_time >= low,
            sim_c2b_payments.c.trans_time <= high,
        )
        .order_by(sim_c2b_payments.c.id)
        .offset(offset)
        .limit(PAGE)
    ).all()
