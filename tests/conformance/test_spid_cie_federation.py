"""Our CIE federation documents against the SPID/CIE OIDC rules' examples (shared/specs, extracted JSON).

Each example (EN 1.1 RP entity configuration, EN 1.2 OP entity configuration, EN 2.1 trust
anchor statement about an RP, EN 6 request object, EN 7 metadata policy) gives the JOSE header
and the claims a conforming document carries; ours must carry at least those, with the same JSON
types, and the values the rules fix (typ, alg, response type, PKCE method, state/nonce length).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from jose import jwt
from pydantic import SecretStr

from sandbox.cie_op.provider import Federation
from services.spid.domain import cie
from services.spid.domain.federation import apply_policy, public_jwk
from sportello.tenants import CieConfig, SpidConfig, Tenant
from tests.support.spid import key_and_cert

EXAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "spid-cie" / "oidc-federation-examples"
CLIENT_ID = "https://sportello.comune.cremona.it/v1/tenants/cremona/auth/cie"
TWIN = "https://cie.twin.example.it"


def example(name: str) -> dict[str, Any]:
    files = list(EXAMPLES.glob(f"{name}_*.json"))
    assert len(files) == 1, f"missing spec example {name} in {EXAMPLES}"
    return dict(json.loads(files[0].read_text(encoding="utf-8")))


def relying_party() -> cie.RelyingParty:
    key, cert = key_and_cert("sp-cremona")
    tenant = Tenant(id="cremona", name="Comune di Cremona", fiscal_code="00297960197", istat_code="019036",
                    ipa_code="c_d150", spid=SpidConfig(
                        entity_id="https://sportello.comune.cremona.it/spid",  # type: ignore[arg-type]
                        signing_key=SecretStr(key), signing_certificate=cert,
                        cie=CieConfig(client_id=CLIENT_ID, provider=f"{TWIN}/op",  # type: ignore[arg-type]
                                      trust_anchor=f"{TWIN}/ta",  # type: ignore[arg-type]
                                      federation_key=SecretStr(key_and_cert("cie-fed")[0]),
                                      signing_key=SecretStr(key_and_cert("cie-core")[0]),
                                      encryption_key=SecretStr(key_and_cert("cie-enc")[0]),
                                      trust_anchor_jwks=json.dumps({"keys": [public_jwk(key_and_cert("ta")[0])]}))))
    return cie.relying_party(tenant)


def federation() -> Federation:
    return Federation(base=TWIN, ta_key=key_and_cert("ta")[0], op_federation_key=key_and_cert("op-fed")[0],
                      op_core_key=key_and_cert("op-core")[0], members=(CLIENT_ID,))


def assert_shape(ours: Any, theirs: Any, path: str = "", *, optional: frozenset[str] = frozenset()) -> None:
    """Every key of the example is in ours (unless optional) with the same JSON type, recursively for objects."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), path
        for key, value in theirs.items():
            where = f"{path}.{key}" if path else key
            if where in optional or key.startswith("_"):
                continue
            assert key in ours, f"{where} missing"
            assert_shape(ours[key], value, where, optional=optional)
    elif isinstance(theirs, list):
        assert isinstance(ours, list), path
    elif isinstance(theirs, bool):
        assert isinstance(ours, bool), path
    elif isinstance(theirs, (int, float)):
        assert isinstance(ours, (int, float)) and not isinstance(ours, bool), path
    elif isinstance(theirs, str):
        assert isinstance(ours, str), path


def decoded(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.get_unverified_claims(token)


def test_rp_entity_configuration_has_the_shape_of_en_1_1() -> None:
    rp = relying_party()
    header, claims = decoded(cie.entity_configuration(rp))
    spec = example("EN1.1")
    assert_shape(header, spec["jose_header"])
    assert header["typ"] == spec["jose_header"]["typ"] == "entity-statement+jwt" and header["alg"] == "RS256"
    assert_shape(claims, spec["payload"], optional=frozenset({
        "metadata.federation_entity.federation_resolve_endpoint",  # we answer no resolve requests
        "metadata.federation_entity.policy_uri", "metadata.federation_entity.logo_uri",
    }))
    assert claims["iss"] == claims["sub"] == claims["metadata"]["openid_relying_party"]["client_id"]
    assert header["kid"] == claims["jwks"]["keys"][0]["kid"] and len(header["kid"]) == 43  # RFC 7638 thumbprint
    for key in claims["jwks"]["keys"] + claims["metadata"]["openid_relying_party"]["jwks"]["keys"]:
        assert "d" not in key and "p" not in key, "private key material published"


def test_op_twin_entity_configuration_has_the_shape_of_en_1_2() -> None:
    header, claims = decoded(federation().provider_configuration())
    spec = example("EN1.2")
    assert_shape(header, spec["jose_header"])
    assert header["typ"] == "entity-statement+jwt"
    not_implemented = {"revocation_endpoint", "introspection_endpoint", "id_token_encryption_alg_values_supported",
                       "id_token_encryption_enc_values_supported", "claims_parameter_supported", "contacts",
                       "logo_uri", "op_policy_uri", "request_uri_parameter_supported",
                       "require_request_uri_registration"}
    assert_shape(claims, spec["payload"], optional=frozenset(
        {f"metadata.openid_provider.{k}" for k in not_implemented}
        | {"metadata.federation_entity.federation_resolve_endpoint", "metadata.federation_entity.policy_uri",
           "metadata.federation_entity.logo_uri"}))


def test_trust_anchor_statement_about_the_rp_has_the_shape_of_en_2_1() -> None:
    rp = relying_party()
    fed = federation()
    token = fed.subordinate_statement(CLIENT_ID, lambda url: cie.entity_configuration(rp))
    header, claims = decoded(token)
    spec = example("EN2.1")
    assert_shape(header, spec["jose_header"])
    assert_shape(claims, spec["payload"], optional=frozenset({
        "trust_marks", "metadata_policy.openid_relying_party.scope",
        "metadata_policy.openid_relying_party.contacts"}))
    assert claims["jwks"] == {"keys": [public_jwk(rp.federation_key)]}


def test_request_object_has_the_shape_of_en_6_and_the_fixed_values() -> None:
    rp = relying_party()
    op = {"issuer": f"{TWIN}/op", "authorization_endpoint": f"{TWIN}/op/authorization"}
    url, pending = cie.authorization_request(rp, op, level=2)
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    header, claims = decoded(query["request"])
    spec = example("EN6")
    assert_shape(header, spec["jose_header"])
    # EN 6 writes acr_values as an object; OpenID Connect Core (and the OPs) take a space-separated string
    assert_shape(claims, spec["payload"], optional=frozenset({"acr_values"}))
    assert claims["response_type"] == "code" and claims["code_challenge_method"] == "S256"
    assert "openid" in claims["scope"].split() and "openid" in query["scope"].split()
    assert claims["iss"] == claims["client_id"] == rp.client_id and op["issuer"] in claims["aud"]
    for name in ("state", "nonce"):
        assert len(claims[name]) >= 32 and claims[name].isalnum()
    assert claims["prompt"] in ("consent", "consent login")
    assert claims["code_challenge"] == cie.code_challenge(pending.code_verifier)


def test_our_rp_metadata_satisfies_the_en_7_policy() -> None:
    _, claims = decoded(cie.entity_configuration(relying_party()))
    metadata = claims["metadata"]["openid_relying_party"]
    policy = example("EN7")["metadata_policy"]["openid_relying_party"]
    resolved = apply_policy(metadata, policy)
    assert resolved["response_types"] == ["code"] and resolved["token_endpoint_auth_method"] == "private_key_jwt"
    assert resolved["grant_types"] == metadata["grant_types"]


def test_the_policy_check_can_fail() -> None:
    policy = example("EN7")["metadata_policy"]["openid_relying_party"]
    from services.spid.domain.errors import FederationError
    with pytest.raises(FederationError):
        apply_policy({"client_id": CLIENT_ID, "redirect_uris": ["x"], "token_endpoint_auth_method": "client_secret"},
                     policy)
