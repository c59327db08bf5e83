"""`/api/webhook-endpoints`: the merchant registers, lists, rotates and removes endpoints."""

from flask import Blueprint, jsonify

from ..errors import ValidationError
from ..extensions import db
from ..orders.schemas import json_body
from ..security import WEBHOOKS_MANAGE, authenticate_api_key
from .endpoints import (
    create_endpoint,
    delete_endpoint,
    endpoint_json,
    get_endpoint,
    live_endpoints,
    rotate_secret,
    set_enabled,
)
from .events import send_test_event

bp = Blueprint("webhooks", __name__, url_prefix="/api/webhook-endpoints")

ENDPOINT_FIELDS = {"url", "events", "description"}


@bp.post("")
def create():
    """Register an endpoint; the answer carries its signing secret, shown this once."""
    api_key = authenticate_api_key(WEBHOOKS_MANAGE)
    data = json_body()
    # refused like every API body's: a misspelt `event` must not subscribe to everything
    unknown = sorted(set(data) - ENDPOINT_FIELDS)
    if unknown:
        raise ValidationError("Unknown fields.", fields={k: "Unknown field." for k in unknown})
    endpoint = create_endpoint(
        data.get("url"), data.get("events"), data.get("description"), api_key_id=api_key.id
    )
    return jsonify(endpoint_json(endpoint, with_secret=True)), 201


@bp.get("")
def index():
    authenticate_api_key(WEBHOOKS_MANAGE)
    return jsonify(endpoints=[endpoint_json(e) for e in live_endpoints()])


@bp.get("/<endpoint_id>")
def show(endpoint_id: str):
    authenticate_api_key(WEBHOOKS_MANAGE)
    return jsonify(endpoint_json(get_endpoint(endpoint_id)))


@bp.delete("/<endpoint_id>")
def delete(endpoint_id: str):
    """Stop sending to it; deliveries still pending are cancelled."""
    authenticate_api_key(WEBHOOKS_MANAGE)
    return jsonify({**endpoint_json(delete_endpoint(endpoint_id)), "deleted": True})


@bp.post("/<endpoint_id>/rotate-secret")
def rotate(endpoint_id: str):
    """A new secret; the old one keeps working for 24 hours (both signatures are sent)."""
    authenticate_api_key(WEBHOOKS_MANAGE)
    return jsonify(endpoint_json(rotate_secret(endpoint_id), with_secret=True))


@bp.post("/<endpoint_id>/disable")
def disable(endpoint_id: str):
    authenticate_api_key(WEBHOOKS_MANAGE)
    return jsonify(endpoint_json(set_enabled(endpoint_id, False)))


@bp.post("/<endpoint_id>/enable")
def enable(endpoint_id: str):
    authenticate_api_key(WEBHOOKS_MANAGE)
    return jsonify(endpoint_json(set_enabled(endpoint_id, True)))


@bp.post("/<endpoint_id>/test")
def test_event(endpoint_id: str):
    """Queue an `endpoint.test` event for this endpoint (delivered like any other)."""
    authenticate_api_key(WEBHOOKS_MANAGE)
    event = send_test_event(get_endpoint(endpoint_id), db.session)
    return jsonify(id=event.id, type=event.type), 202
