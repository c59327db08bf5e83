"""Pull Transactions: the C2B payments M-Pesa received on a shortcode, asked for by time
window (up to 48 hours), so a Paybill payment whose confirmation never arrived is found
(`callbacks/pull.py` feeds each one through the C2B confirmation kind).

Register once per shortcode (`/pulltransactions/v1/register`), then query
(`/pulltransactions/v1/query`, `StartDate`/`EndDate` as `YYYY-MM-DD HH:MM:SS` EAT,
`OffSetValue` for paging). The field spellings follow Daraja's page as the peers read it
(`transactionId`, `trxDate`, `msisdn`, `billreference`, `amount`, …): an assumption
checked against the simulator only (docs/daraja.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import error_from_body
from .formats import EAT, parse_amount, parse_receipt
from .transport import Endpoint, Transport, counts_errors

REGISTER = Endpoint("/pulltransactions/v1/register", "pull_register")
QUERY = Endpoint("/pulltransactions/v1/query", "pull_query")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_WINDOW_S = 48 * 3600


@dataclass(frozen=True)
class PulledTransaction:
    """One C2B payment as Pull Transactions lists it."""

    receipt: str
    at: datetime | None
    msisdn: str
    account: str
    amount: int | None
    shortcode: str


def _when(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    text = value.strip().replace("Z", "+00:00")
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, DATE_FORMAT)):
        try:
            moment = parse(text)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=EAT)
    return None


def _transactions(body: dict, shortcode: str) -> list[PulledTransaction]:
    """The listed transactions; Daraja nests them in a list of lists."""
    rows = body.get("Response") or []
    if rows and isinstance(rows[0], list):
        rows = [item for page in rows for item in page]
    pulled = []
    for row in rows if isinstance(rows, list) else []:
        receipt = parse_receipt(row.get("transactionId")) if isinstance(row, dict) else None
        if receipt is None:
            continue
        amount, _ = parse_amount(row.get("amount"))
        pulled.append(
            PulledTransaction(
                receipt=receipt,
                at=_when(row.get("trxDate")),
                msisdn=str(row.get("msisdn") or "")[:12],
                account=str(row.get("billreference") or "")[:64],
                amount=amount,
                shortcode=shortcode,
            )
        )
    return pulled


class PullApi(Transport):
    """Pull Transactions on a shortcode."""

    @counts_errors(REGISTER)
    def register_pull(self, *, shortcode: str, nominated_number: str, callback_url: str) -> dict:
        """The one-time registration of a shortcode for Pull Transactions."""
        payload = {
            "ShortCode": shortcode,
            "RequestType": "Pull",
            "NominatedNumber": nominated_number,
            "CallBackURL": callback_url,
        }
        status, body = self._authorised_post(REGISTER, payload, maybe_sent_on_timeout=False)
        if str(body.get("ResponseCode", body.get("ResponseStatus", ""))) in ("0", "1000"):
            return body
        raise error_from_body(status, body)

    @counts_errors(QUERY)
    def pull_transactions(
        self, *, shortcode: str, start: datetime, end: datetime
    ) -> list[PulledTransaction]:
        """Every C2B payment on `shortcode` between `start` and `end` (at most 48 hours
        apart), all pages."""
        if (end - start).total_seconds() > MAX_WINDOW_S:
            start = end - timedelta(seconds=MAX_WINDOW_S)
        pulled: list[PulledTransaction] = []
        while True:
            payload = {
                "ShortCode": shortcode,
                "StartDate": start.astimezone(EAT).strftime(DATE_FORMAT),
                "EndDate": end.astimezone(EAT).strftime(DATE_FORMAT),
                "OffSetValue": str(len(pulled)),
            }
            status, body = self._authorised_post(QUERY, payload, maybe_sent_on_timeout=False)
            if str(body.get("ResponseCode", "")) not in ("0", "1000"):
                raise error_from_body(status, body)
            page = _transactions(body, shortcode)
            pulled += page
            if not page:
                return pulled
