"""Gateway tokens: issued by spid, verified by the gateway against the published JWKS."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from sportello.errors import ConfigurationError
from sportello.tokens import AUDIENCE, ISSUER, SigningKey, TokenIssuer, TokenVerifier, Unauthenticated


def _key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SigningKey(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()).decode())


KEY, OTHER = _key(), _key()


def test_issued_token_verifies_into_a_principal() -> None:
    issuer = TokenIssuer(KEY)
    token = issuer.issue(subject="RSSMRA85T10A562S", tenant="cremona", level=2, roles=["citizen", "operator"])
    principal = TokenVerifier(issuer.jwks()).verify(token)
    assert principal.subject == "RSSMRA85T10A562S"
    assert principal.tenant == "cremona" and principal.level == 2
    assert principal.roles == ("citizen", "operator")
    assert principal.has_role("operator") and not principal.has_role("admin")
    assert principal.expires_at - time.time() == pytest.approx(900, abs=5)
    assert jwt.get_unverified_header(token)["kid"] == KEY.kid


def test_jwks_publishes_public_parts_only_with_key_ids() -> None:
    jwks = TokenIssuer(KEY, OTHER).jwks()
    assert [k["kid"] for k in jwks["keys"]] == [KEY.kid, OTHER.kid]
    for key in jwks["keys"]:
        assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)


def test_rotation_previous_key_still_verifies_until_dropped() -> None:
    old_token = TokenIssuer(OTHER).issue(subject="RSSMRA85T10A562S", tenant="cremona", level=2, roles=["citizen"])
    rotated = TokenIssuer(KEY, previous=OTHER)
    assert TokenVerifier(rotated.jwks()).verify(old_token).tenant == "cremona"
    with pytest.raises(Unauthenticated, match="unknown key"):
        TokenVerifier(TokenIssuer(KEY).jwks()).verify(old_token)


@pytest.mark.parametrize("reason, make", [
    ("expired", lambda: TokenIssuer(KEY).issue(subject="RSSMRA85T10A562S", tenant="cremona", level=1,
                                               roles=["citizen"], now=time.time() - 2000)),
    ("signature invalid", lambda: _tamper(TokenIssuer(KEY).issue(subject="RSSMRA85T10A562S", tenant="cremona",
                                                                 level=1, roles=["citizen"]))),
    ("malformed", lambda: "not-a-token"),
    ("algorithm not accepted", lambda: jwt.encode({"sub": "x"}, "secret", algorithm="HS256",
                                                  headers={"kid": KEY.kid})),
    ("claims rejected", lambda: jwt.encode({"iss": ISSUER, "aud": "someone-else", "sub": "x", "iat": int(time.time()),
                                            "exp": int(time.time()) + 60, "jti": "j"}, KEY.private_pem,
                                           algorithm="RS256", headers={"kid": KEY.kid})),
    ("claims incomplete", lambda: jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": int(time.time()),
                                              "exp": int(time.time()) + 60, "jti": "j"}, KEY.private_pem,
                                             algorithm="RS256", headers={"kid": KEY.kid})),
])
def test_bad_tokens_are_rejected_with_a_reason_and_without_echoing_them(reason: str, make) -> None:  # type: ignore[no-untyped-def]
    token = make()
    with pytest.raises(Unauthenticated, match=reason) as caught:
        TokenVerifier(TokenIssuer(KEY).jwks()).verify(token)
    assert token not in str(caught.value)


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    return ".".join([header, payload[:-4] + ("AAAA" if payload[-4:] != "AAAA" else "BBBB"), signature])


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        TokenIssuer(KEY, lifetime_seconds=10)
    with pytest.raises(ConfigurationError):
        TokenVerifier({"keys": []})
