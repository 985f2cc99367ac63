"""Secrets at rest: model credentials and agents' secrets are stored encrypted with Fernet
(AES-128-CBC and HMAC-SHA256, from `cryptography`).

The key is AGENTHUB_CREDENTIALS_KEY: one or more Fernet keys, comma-separated; the first
encrypts, all decrypt, so a key is rotated by putting the new one first and re-saving
(`manage.py set_model_credential` re-encrypts what it writes). With none set — development,
`make run`, the tests — the key is derived from SECRET_KEY, so the web server and every worker
sharing the settings read the same secrets wherever their data directories are; production
sets its own and keeps it apart from the database's backups."""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class Undecryptable(Exception):
    """A stored secret that none of the configured keys opens."""


def encrypt(plain: str) -> str:
    return _keys().encrypt(plain.encode()).decode()


def decrypt(sealed: str) -> str:
    try:
        return _keys().decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise Undecryptable(
            "A stored secret cannot be decrypted with AGENTHUB_CREDENTIALS_KEY: was the key "
            "changed without keeping the old one after it?"
        ) from None


@cache
def _keys() -> MultiFernet:
    configured = [k.strip() for k in settings.AGENTHUB_CREDENTIALS_KEY.split(",") if k.strip()]
    if not configured:
        derived = hashlib.sha256(f"agenthub-credentials:{settings.SECRET_KEY}".encode()).digest()
        configured = [base64.urlsafe_b64encode(derived).decode()]
    try:
        return MultiFernet([Fernet(key) for key in configured])
    except ValueError:
        raise ValueError(
            "AGENTHUB_CREDENTIALS_KEY must be Fernet keys (32 url-safe base64-encoded bytes), "
            "comma-separated; make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from None


if TYPE_CHECKING:
    _Field = models.Field[dict[str, Any], dict[str, Any]]
else:
    _Field = models.Field


class Unopened(dict[str, Any]):
    """Sealed secrets none of the keys opens: empty to the code, so the row still loads (a page,
    a list), and written back sealed as they were, so saving the row loses nothing. Whoever
    needs the secrets (the worker) checks for it and says `reason`."""

    def __init__(self, sealed: str, reason: str) -> None:
        super().__init__()
        self.sealed = sealed
        self.reason = reason


class SealedJSONField(_Field):
    """A JSON object stored encrypted: the code sees the dict, the database a Fernet token."""

    def get_internal_type(self) -> str:
        return "TextField"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if not value:
            return {}
        try:
            return json.loads(decrypt(value))
        except Undecryptable as exc:
            return Unopened(value, str(exc))

    def to_python(self, value: Any) -> Any:
        if isinstance(value, dict) or value is None:
            return value or {}
        return json.loads(value) if value else {}

    def get_prep_value(self, value: Any) -> str:
        if isinstance(value, Unopened):
            return value.sealed
        return encrypt(json.dumps(value or {}, sort_keys=True))

    def value_to_string(self, obj: Any) -> str:
        return "(sealed)"  # never into a fixture or a serializer in the clear
