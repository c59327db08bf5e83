"""Daraja's Dynamic QR as the simulator answers it (`POST /mpesa/qrcode/v1/generate`), and
the simulated phone scanning one.

The request is checked as Daraja checks it (token, fields in its words). The answer holds
a real, scannable PNG (made with `segno`) whose text is EMVCo-shaped, as Kenyan M-Pesa QR
codes are: tag-length-value fields with the amount (54), the currency (53, 404), the
country (58), the merchant's name (59), the account (`RefNo`, as the bill number 62/01),
M-Pesa's own template (26: the TrxCode and the CPI) and a CRC (63). The exact layout of
Safaricom's template is not published: this one is the simulator's, read back by
`parse_payload`.

Scanning (`POST /_simulator/api/qr/scan`, and the phone page's Scan QR screen) pays what
the code says the way the M-Pesa app would: a Paybill payment (`PB`) of its amount to its
CPI with its RefNo as the account number, posted like any Pay Bill payment (c2b.py). Other
TrxCodes are generated but not payable here.
"""

from __future__ import annotations

import base64
import io
import secrets
from datetime import UTC, datetime

import segno
from flask import current_app, jsonify, request
from sqlalchemy import insert, select

from ..extensions import db
from ..models import utcnow
from . import bp, c2b
from .daraja import daraja_error, take_fault, token_ok, whole_shillings
from .models import sim_qr_codes
from .phone import sim_error

TRX_CODES = ("BG", "WA", "PB", "SM", "SB")  # buy goods, withdraw, paybill, send money, to business
INVALID = "400.002.02"
SIZE_RANGE = (100, 1000)
NAME_MAX = 64


def _tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value):02d}{value}"


def crc16(text: str) -> str:
    """CRC-16/CCITT-FALSE, as EMVCo's tag 63 carries it (4 hex digits)."""
    crc = 0xFFFF
    for byte in text.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def build_payload(*, merchant_name: str, ref_no: str, amount: int, trx_code: str, cpi: str) -> str:
    body = (
        _tlv("00", "01")  # payload format
        + _tlv("01", "12")  # dynamic: for one payment
        + _tlv("26", _tlv("00", "MPESA") + _tlv("01", trx_code) + _tlv("02", cpi))
        + _tlv("53", "404")  # KES
        + _tlv("54", str(amount))
        + _tlv("58", "KE")
        + _tlv("59", merchant_name)
        + _tlv("62", _tlv("01", ref_no))
        + "6304"
    )
    return body + crc16(body)


def _fields(text: str) -> dict[str, str]:
    fields, at = {}, 0
    while at < len(text):
        tag, size = text[at : at + 2], text[at + 2 : at + 4]
        if not size.isdigit() or at + 4 + int(size) > len(text):
            raise ValueError("not a tag-length-value text")
        fields[tag] = text[at + 4 : at + 4 + int(size)]
        at += 4 + int(size)
    return fields


def parse_payload(text: str) -> dict:
    """What a QR of `build_payload` says; ValueError for anything else (a bad CRC too)."""
    if len(text) < 8 or crc16(text[:-4]) != text[-4:].upper():
        raise ValueError("the QR's checksum does not match")
    top = _fields(text)
    template, extra = _fields(top.get("26", "")), _fields(top.get("62", ""))
    if template.get("00") != "MPESA" or not top.get("54", "").isdigit():
        raise ValueError("not an M-Pesa payment QR")
    return {
        "merchant_name": top.get("59", ""),
        "ref_no": extra.get("01", ""),
        "amount": int(top["54"]),
        "trx_code": template.get("01", ""),
        "cpi": template.get("02", ""),
    }


def _png(payload: str, size: int) -> bytes:
    code = segno.make(payload, error="m")
    width = code.symbol_size(border=4)[0]
    buffer = io.BytesIO()
    code.save(buffer, kind="png", scale=max(1, size // width), border=4)
    return buffer.getvalue()


def _problem(body: dict) -> str | None:
    """Daraja's field checks, in its words; None when the request is acceptable."""
    name = body.get("MerchantName")
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX:
        return "Bad Request - Invalid MerchantName"
    ref = body.get("RefNo")
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 64:
        return "Bad Request - Invalid RefNo"
    if whole_shillings(body.get("Amount")) is None:
        return "Bad Request - Invalid Amount"
    if body.get("TrxCode") not in TRX_CODES:
        return "Bad Request - Invalid TrxCode"
    cpi = body.get("CPI")
    if not isinstance(cpi, str) or not cpi.isdigit() or not 5 <= len(cpi) <= 12:
        return "Bad Request - Invalid CPI"
    size = str(body.get("Size", ""))
    if not size.isdigit() or not SIZE_RANGE[0] <= int(size) <= SIZE_RANGE[1]:
        return "Bad Request - Invalid Size"
    return None


@bp.post("/mpesa/qrcode/v1/generate")
def generate_qr():
    """A Dynamic QR: the PNG, base64, in Daraja's answer."""
    if not token_ok():
        return daraja_error(401, "404.001.03", "Invalid Access Token")
    if fault := take_fault("qrcode"):
        return fault
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return daraja_error(400, INVALID, "Bad Request - Invalid JSON")
    if problem := _problem(body):
        return daraja_error(400, INVALID, problem)
    fields = {
        "merchant_name": body["MerchantName"].strip(),
        "ref_no": body["RefNo"].strip(),
        "amount": whole_shillings(body["Amount"]),
        "trx_code": body["TrxCode"],
        "cpi": body["CPI"],
    }
    payload = build_payload(**fields)
    db.session.execute(insert(sim_qr_codes).values(payload=payload, created_at=utcnow(), **fields))
    db.session.commit()
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return jsonify(
        ResponseCode=f"AG_{stamp}_{secrets.token_hex(10)}",
        RequestID=f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(9 * 10**7) + 10**7}-1",
        ResponseDescription="QR Code Successfully Generated.",
        QRCode=base64.b64encode(_png(payload, int(body["Size"]))).decode(),
    )


def qr_json(row) -> dict:
    return {
        "id": row.id,
        "payload": row.payload,
        "merchant_name": row.merchant_name,
        "ref_no": row.ref_no,
        "amount": row.amount,
        "trx_code": row.trx_code,
        "cpi": row.cpi,
        "created_at": row.created_at.isoformat(),
    }


@bp.get("/api/qr")
def list_qr_codes():
    """The latest QR codes handed out, newest first (the phone's Scan QR screen)."""
    rows = db.session.execute(
        select(sim_qr_codes).order_by(sim_qr_codes.c.id.desc()).limit(10)
    ).all()
    return jsonify(qr_codes=[qr_json(row) for row in rows])


@bp.post("/api/qr/scan")
def scan_qr():
    """The phone scans a QR `{payload}` (what the code holds) and pays it as the M-Pesa
    app would: a Pay Bill payment of its amount, to its CPI, with its RefNo as account."""
    data = request.get_json(silent=True)
    text = data.get("payload") if isinstance(data, dict) else None
    if not isinstance(text, str):
        return sim_error(422, "Send {payload}: the text the QR code holds.")
    try:
        said = parse_payload(text.strip())
    except ValueError as exc:
        return sim_error(422, f"That is not an M-Pesa QR code: {exc}.")
    if said["trx_code"] != "PB":
        return sim_error(422, f"This simulator pays Paybill QR codes (PB), not {said['trx_code']}.")
    if c2b.registration(said["cpi"]) is None:
        if said["cpi"] != current_app.config["MPESA_C2B_SHORTCODE"]:
            return sim_error(422, f"No business with number {said['cpi']} here.")
        c2b.register_app_urls(said["cpi"])
    payment_id = c2b.start_payment(
        source="qr",
        shortcode=said["cpi"],
        account=said["ref_no"],
        amount=said["amount"],
        msisdn=c2b.SIM_MSISDN,
        transaction_type="Pay Bill",
    )
    return jsonify(payment=c2b.payment_json(c2b.get_payment(payment_id)), qr=said), 202
