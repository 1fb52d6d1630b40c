"""Standard Webhooks signatures (standardwebhooks.com) for outbox deliveries.

The secret is `whsec_` + base64 of 24 to 64 random bytes. Each attempt carries
`webhook-id` (the row's stable event id), `webhook-timestamp` (Unix seconds of *this* attempt)
and `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`; a receiver
checks the signature over the raw body and refuses timestamps outside its tolerance (the spec
suggests 5 minutes), so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"
MIN_KEY, MAX_KEY = 24, 64


def secret_key(secret: str) -> bytes | None:
    """The HMAC key of a `whsec_` secret, or None if it is not one."""
    if not isinstance(secret, str) or not secret.startswith(PREFIX) or len(secret) > 200:
        return None
    text = secret[len(PREFIX) :].rstrip("=")
    try:  # padding is optional (some providers leave it out)
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if MIN_KEY <= len(key) <= MAX_KEY else None


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The two headers an attempt adds to its `webhook-id`."""
    return {
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, msg_id, timestamp, body),
    }
