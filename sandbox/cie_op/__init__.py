"""CIE OpenID Provider twin with its trust anchor (OpenID Connect Federation), for synthetic citizens."""

PORT = 8107
