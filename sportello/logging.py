"""Structured JSON logs that never carry personal data in clear.

Why: logs leave the Comune's control (aggregators, support tickets). Every log line passes a
masking processor that redacts fiscal codes, IBANs, e-mail addresses, bearer tokens, JWTs and
SAML/XML blobs wherever they appear in a value, and whole values under keys that name personal
data. Event names are static strings; ids go in fields.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

# Personal (16-character) Italian fiscal codes, including omocodia letters.
_FISCAL_CODE = re.compile(
    r"(?<![A-Za-z0-9])[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[ABCDEHLMPRSTabcdehlmprst]"
    r"[0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z](?![A-Za-z0-9])"
)
# IBANs, compact or printed in groups of four.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}[0-9]{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")
# The match runs to the end of the word, so it never cuts what follows in half ("x@y.RSSMRA85...").
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}[A-Za-z0-9]*")
_BEARER = re.compile(r"(?i)\b(bearer|dpop|basic)\s+[A-Za-z0-9._~+/=-]+")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# Base64 of "<samlp:", "<saml2p:", "<saml:", "<?xml", "<md:" and any XML text of SAML.
_SAML_B64 = re.compile(r"(?:PHNhbWxw|PHNhbWwyc|PHNhbWw6|PD94bWwg|PG1kOk)[A-Za-z0-9+/=\r\n]{16,}")
_SAML_XML = re.compile(r"<(?:\w+:)?(?:Response|Assertion|AuthnRequest|EncryptedAssertion)\b.*", re.S)
_LONG_BLOB = re.compile(r"[A-Za-z0-9+/_-]{120,}={0,2}")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (_SAML_XML, "[saml]"),
    (_SAML_B64, "[saml]"),
    (_JWT, "[jwt]"),
    (_BEARER, "[token]"),
    (_EMAIL, "[email]"),
    (_IBAN, "[iban]"),
    (_FISCAL_CODE, "[fiscal-code]"),
    (_LONG_BLOB, "[blob]"),
)

# Keys whose whole value is personal or secret, whatever it looks like.
SENSITIVE_KEYS = frozenset(
    {
        "fiscal_code", "codice_fiscale", "fiscalnumber", "fiscal_number", "cf", "name", "given_name",
        "family_name", "familyname", "surname", "first_name", "last_name", "email", "iban", "phone",
        "address", "birth_date", "date_of_birth", "token", "access_token", "refresh_token", "id_token",
        "password", "secret", "assertion", "saml_response", "samlresponse", "authorization",
        "api_key", "subscription_key", "private_key", "client_assertion", "cookie",
    }
)
# The message itself is masked too: a formatted f-string is as likely to carry personal data as a field.
_KEEP = frozenset({"level", "timestamp", "logger"})


def mask_text(text: str) -> str:
    """Redact every kind of personal data or credential found in free text."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_value(value: Any, key: str | None = None) -> Any:
    if key is not None and key.lower() in SENSITIVE_KEYS and value is not None:
        return "[redacted]"
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: mask_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_value(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return mask_text(repr(value))


def mask_personal_data(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """structlog processor: the last line of defence before a log line is written."""
    return {key: (value if key in _KEEP else mask_value(value, key)) for key, value in event_dict.items()}


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """JSON lines on stdout with service, timestamp and the bound context (correlation id...)."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries (nameko, kombu) log through the stdlib: keep them terse and on stderr, masked too.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)


class _MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
