"""Runs INSIDE the reference implementation's virtualenv (.tools/spid-cie-oidc), not in ours.

Reads a JSON job on stdin (entity ids, our request object, client assertion and token forms),
lets `spid-cie-oidc` (italia/spid-cie-oidc-django) do what its OP and RP do with them, and
prints one JSON report: {check name: "ok" | "error: ..."}. No import of Sportello code here.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any


def setup() -> None:
    import django
    from django.conf import settings

    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions",
                        "spid_cie_oidc.entity", "spid_cie_oidc.provider", "spid_cie_oidc.relying_party"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True, SECRET_KEY="reference-check", HTTP_CLIENT_SYNC=True,
        HTTPC_PARAMS={"timeout": 10}, OIDCFED_PROVIDER_PROFILE="cie",
    )
    django.setup()


def string_to_list(payload: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """What the reference OP's authorization view does before validating (scope, acr_values)."""
    out = dict(payload)
    for name in names:
        if isinstance(out.get(name), str):
            out[name] = out[name].split(" ")
    return out


def main() -> None:
    job = json.load(sys.stdin)
    setup()
    from spid_cie_oidc.entity.jwtse import unpad_jwt_head, unpad_jwt_payload, verify_jws
    from spid_cie_oidc.entity.schemas.op_metadata import OPMetadataCie
    from spid_cie_oidc.entity.schemas.rp_metadata import RPMetadataCie
    from spid_cie_oidc.entity.statements import EntityConfiguration, get_entity_configurations
    from spid_cie_oidc.entity.trust_chain import TrustChainBuilder
    from spid_cie_oidc.provider.schemas.authn_requests import AuthenticationRequestCie, AuthenticationRequestDoc
    from spid_cie_oidc.provider.schemas.client_assertion import ClientAssertion
    from spid_cie_oidc.provider.schemas.revocation_request import RevocationRequest
    from spid_cie_oidc.provider.schemas.token_requests import TokenAuthnCodeRequest, TokenRefreshRequest

    report: dict[str, str] = {}
    found: dict[str, Any] = {}

    def check(name: str, run: Any) -> None:
        try:
            result = run()
            report[name] = "ok" if result is None or result is True else f"error: returned {result!r}"
        except Exception as exc:  # every failure is reported, not raised
            report[name] = f"error: {type(exc).__name__}: {exc}"[:800]
            if job.get("debug"):
                traceback.print_exc(file=sys.stderr)

    def rp_entity_configuration() -> None:
        ec = EntityConfiguration(get_entity_configurations([job["rp"]], {"timeout": 10})[0],
                                 httpc_params={"timeout": 10})
        assert ec.validate_by_itself(), "self-signature"
        assert ec.sub.rstrip("/") == job["rp"].rstrip("/"), ec.sub
        RPMetadataCie(**{**ec.payload["metadata"]["openid_relying_party"],
                         "organization_name": ec.payload["metadata"]["federation_entity"]["organization_name"]})

    def chain(subject: str, key: str, metadata_type: str) -> None:
        builder = TrustChainBuilder(subject=subject, trust_anchor=job["trust_anchor"], httpc_params={"timeout": 10})
        builder.start()
        assert builder.is_valid, f"trust chain of {subject} not valid"
        assert metadata_type in builder.final_metadata, sorted(builder.final_metadata)
        found[key] = builder

    def rp_chain() -> None:
        chain(job["rp"], "rp", "openid_relying_party")
        rp = dict(found["rp"].final_metadata["openid_relying_party"])
        rp.setdefault("organization_name", rp.get("client_name"))
        RPMetadataCie(**rp)

    def op_chain() -> None:
        chain(job["op"], "op", "openid_provider")
        OPMetadataCie(**found["op"].final_metadata["openid_provider"])
        assert len(found["op"].trust_path) == job["op_path_length"], found["op"].trust_path

    def rp_keys() -> list[dict[str, Any]]:
        return list(found["rp"].final_metadata["openid_relying_party"]["jwks"]["keys"])

    def find_jwk(token: str) -> dict[str, Any]:
        kid = unpad_jwt_head(token)["kid"]
        match = [k for k in rp_keys() if k.get("kid") == kid]
        assert match, f"kid {kid} not in the RP's resolved metadata"
        return match[0]

    def request_object() -> None:
        from spid_cie_oidc.provider.views.authz_request_view import AuthzRequestView
        AuthenticationRequestDoc(**string_to_list(job["authorization_query"], ("scope",)))
        payload = unpad_jwt_payload(job["authorization_query"]["request"])
        AuthenticationRequestCie(**string_to_list(payload, ("scope", "acr_values")))
        AuthzRequestView().validate_authz(dict(payload))  # the OP view's own checks (offline_access, redirect)
        assert "sub" not in payload, "the request object must not carry sub (reusable as a client assertion)"
        verify_jws(job["authorization_query"]["request"], find_jwk(job["authorization_query"]["request"]))

    def client_assertion(form: dict[str, str]) -> None:
        ClientAssertion(**unpad_jwt_payload(form["client_assertion"]))
        verify_jws(form["client_assertion"], find_jwk(form["client_assertion"]))

    def token_request() -> None:
        TokenAuthnCodeRequest(**job["token_form"])
        client_assertion(job["token_form"])

    def refresh_request() -> None:
        TokenRefreshRequest(**job["refresh_form"])
        client_assertion(job["refresh_form"])

    def revocation_request() -> None:
        RevocationRequest(**job["revocation_form"])
        client_assertion(job["revocation_form"])

    check("rp_entity_configuration", rp_entity_configuration)
    check("rp_trust_chain", rp_chain)
    check("op_trust_chain", op_chain)
    if "rp" in found:
        check("authorization_request", request_object)
        check("token_request", token_request)
        if job.get("refresh_form"):
            check("refresh_request", refresh_request)
        if job.get("revocation_form"):
            check("revocation_request", revocation_request)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
