"""Runs INSIDE the reference implementation's virtualenv: its trust anchor and CIE OP, as a server.

A throw-away Django project (in the folder given on stdin) with the reference apps
(`spid_cie_oidc.entity`, `.authority`, `.provider`) serving, on one local port, a trust anchor
at `/` and a CIE OpenID Provider at `/oidc/op` (as the reference's `federation_authority`
example does). Our RP is enrolled as a descendant of that anchor with its federation keys, one
test citizen can log in. Prints one JSON line (the anchor's public JWKS, the citizen's
credentials), then serves until killed. No import of Sportello code here.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

SETTINGS = '''
ALLOWED_HOSTS = ["*"]
SECRET_KEY = "reference-federation-for-tests"
DEBUG = False
APPEND_SLASH = False
USE_TZ = True
TIME_ZONE = "Europe/Rome"
AUTH_USER_MODEL = "spid_cie_oidc_accounts.User"
INSTALLED_APPS = [
    "spid_cie_oidc.accounts", "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "bootstrap_italia_template", "spid_cie_oidc.entity", "spid_cie_oidc.authority", "spid_cie_oidc.provider",
    "djagger",
]
MIDDLEWARE = [  # no CSRF middleware: the test plays the browser without a cookie jar dance
    "django.contrib.sessions.middleware.SessionMiddleware", "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware", "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "reference_urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
              "OPTIONS": {"context_processors": ["django.template.context_processors.request",
                                                 "django.contrib.auth.context_processors.auth",
                                                 "django.contrib.messages.context_processors.messages"]}}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": %(db)r}}
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
OIDCFED_DEFAULT_TRUST_ANCHOR = %(base)r
OIDCFED_TRUST_ANCHORS = [%(base)r]
OIDCFED_PROVIDER_PROFILE = "cie"
OIDCFED_REQUIRED_TRUST_MARKS = []
HTTP_CLIENT_SYNC = True
HTTPC_PARAMS = {"timeout": 10}
LOGIN_URL = "/oidc/op/landing"
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"stderr": {"class": "logging.StreamHandler"}},
           "loggers": {"django": {"handlers": ["stderr"], "level": "WARNING"},
                       "spid_cie_oidc": {"handlers": ["stderr"], "level": "WARNING"}}}
FEDERATION_DEFAULT_POLICY = {"openid_relying_party": {"grant_types": {"subset_of": ["authorization_code",
                                                                                     "refresh_token"]}}}
'''

URLS = '''
from django.urls import path
from spid_cie_oidc.authority.urls import urlpatterns as authority
from spid_cie_oidc.entity.urls import urlpatterns as entity
from spid_cie_oidc.entity.views import entity_configuration
from spid_cie_oidc.provider.urls import urlpatterns as provider

urlpatterns = [*entity, *authority, *provider,
               path("oidc/op/.well-known/openid-federation", entity_configuration, name="op_ec")]
'''


def op_metadata(base: str, core_public: list[dict[str, Any]]) -> dict[str, Any]:
    """The provider's metadata as the reference's CIE provider example publishes it."""
    op = f"{base}/oidc/op"
    return {
        "issuer": op, "authorization_endpoint": f"{op}/authorization", "token_endpoint": f"{op}/token",
        "userinfo_endpoint": f"{op}/userinfo", "introspection_endpoint": f"{op}/introspection",
        "revocation_endpoint": f"{op}/revocation", "jwks": {"keys": core_public},
        "code_challenge_methods_supported": ["S256"], "client_registration_types_supported": ["automatic"],
        "request_authentication_methods_supported": {"ar": ["request_object"]},
        "acr_values_supported": ["https://www.spid.gov.it/SpidL1", "https://www.spid.gov.it/SpidL2",
                                 "https://www.spid.gov.it/SpidL3"],
        "claims_supported": ["given_name", "family_name", "email", "https://attributes.eid.gov.it/fiscal_number"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "id_token_signing_alg_values_supported": ["RS256"], "id_token_encryption_alg_values_supported": ["RSA-OAEP"],
        "id_token_encryption_enc_values_supported": ["A128CBC-HS256"],
        "userinfo_signing_alg_values_supported": ["RS256"],
        "userinfo_encryption_alg_values_supported": ["RSA-OAEP", "RSA-OAEP-256"],
        "userinfo_encryption_enc_values_supported": ["A128CBC-HS256", "A256CBC-HS512"],
        "request_object_signing_alg_values_supported": ["RS256"],
        "request_object_encryption_alg_values_supported": ["RSA-OAEP"],
        "request_object_encryption_enc_values_supported": ["A128CBC-HS256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "offline_access"], "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"], "subject_types_supported": ["pairwise"],
        "claims_parameter_supported": True, "request_parameter_supported": True,
        "authorization_response_iss_parameter_supported": True, "tls_client_certificate_bound_access_tokens": True,
    }


def main() -> None:
    job = json.load(sys.stdin)
    work, port = Path(job["work"]), int(job["port"])
    base = f"http://127.0.0.1:{port}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "reference_settings.py").write_text(SETTINGS % {"db": str(work / "reference.sqlite3"), "base": base})
    (work / "reference_urls.py").write_text(URLS)
    sys.path.insert(0, str(work))
    os.environ["DJANGO_SETTINGS_MODULE"] = "reference_settings"
    import django
    django.setup()
    from django.core.management import call_command
    call_command("migrate", verbosity=0, interactive=False)

    from spid_cie_oidc.accounts.models import User
    from spid_cie_oidc.authority.models import FederationDescendant
    from spid_cie_oidc.entity.jwks import create_jwk, public_jwk_from_private_jwk
    from spid_cie_oidc.entity.models import FederationEntityConfiguration

    ta_fed, ta_core, op_fed, op_core = (create_jwk() for _ in range(4))
    op_core["use"] = "sig"  # the provider looks its signing key up by `use`
    FederationEntityConfiguration.objects.create(
        sub=base, entity_type="federation_entity", default_exp=60, default_signature_alg="RS256",
        authority_hints=[], jwks_fed=[ta_fed], jwks_core=[ta_core], trust_marks=[], trust_mark_issuers={},
        metadata={"federation_entity": {
            "organization_name": "reference trust anchor", "homepage_uri": base, "contacts": ["ops@example.it"],
            "federation_fetch_endpoint": f"{base}/fetch", "federation_resolve_endpoint": f"{base}/resolve",
            "federation_list_endpoint": f"{base}/list",
            "federation_trust_mark_status_endpoint": f"{base}/trust_mark_status"}},
        constraints={"max_path_length": 1}, is_active=True)
    FederationEntityConfiguration.objects.create(
        sub=f"{base}/oidc/op", entity_type="openid_provider", default_exp=60, default_signature_alg="RS256",
        authority_hints=[base], jwks_fed=[op_fed], jwks_core=[op_core], trust_marks=[], trust_mark_issuers={},
        metadata={"openid_provider": op_metadata(base, [public_jwk_from_private_jwk(op_core)]),
                  "federation_entity": {"organization_name": "reference CIE OP", "homepage_uri": base,
                                        "contacts": ["ops@example.it"]}},
        is_active=True)
    FederationDescendant.objects.create(
        name="reference CIE OP", sub=f"{base}/oidc/op", type="openid_provider",
        jwks=[public_jwk_from_private_jwk(op_fed)], metadata_policy={}, is_active=True, status="valid")
    FederationDescendant.objects.create(
        name="Sportello RP", sub=job["rp"], type="openid_relying_party", jwks=job["rp_jwks"],
        metadata_policy={"openid_relying_party": {"scope": {"superset_of": ["openid"],
                                                            "subset_of": ["openid", "offline_access"]}}},
        is_active=True, status="valid")
    fiscal = job["fiscal_number"]
    user = User.objects.create_user(username="citizen", password="reference-Password-1")
    user.attributes = {"fiscal_number": fiscal, "https://attributes.eid.gov.it/fiscal_number": fiscal,
                       "given_name": "Giulia", "name": "Giulia", "family_name": "Bianchi",
                       "email": "giulia@example.it"}
    user.save()

    print(json.dumps({"trust_anchor_jwks": {"keys": [public_jwk_from_private_jwk(ta_fed)]},
                      "username": "citizen", "password": "reference-Password-1"}), flush=True)
    from django.core.servers.basehttp import run
    from django.core.wsgi import get_wsgi_application

    run("127.0.0.1", port, get_wsgi_application(), threading=True)

if __name__ == "__main__":
    main()
