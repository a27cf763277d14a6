"""Tenants: one Comune each, loaded from configuration files plus secrets.

Why: one installation serves many Comuni, each with its own codes, IBANs, keys and IO
services. A tenant is added by dropping a YAML file in the tenants folder and providing its
secrets (environment variables `SPORTELLO_SECRET_<NAME>` or files in the secrets folder) — never
by code. A secret is written in YAML as `{secret: NAME}`; a missing one stops start-up.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum.it import codicefiscale, iva

from sportello.errors import ConfigurationError, UnknownTenant

_SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,127}$")
TenantId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,62}$")]


class SecretSource:
    """Where secrets come from: the environment first, then mounted files."""

    def __init__(self, environ: Mapping[str, str] | None = None, secrets_dir: Path | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._dir = secrets_dir

    def find(self, name: str) -> str | None:
        """The secret's value, or None when it is not provided (for optional secrets)."""
        try:
            return self.get(name)
        except ConfigurationError:
            if not _SECRET_NAME.match(name):
                raise
            return None

    def get(self, name: str) -> str:
        if not _SECRET_NAME.match(name):
            raise ConfigurationError(f"secret name {name!r} must be UPPER_SNAKE_CASE")
        value = self._environ.get(f"SPORTELLO_SECRET_{name}")
        if value is None and self._dir is not None:
            path = self._dir / name
            if path.is_file():
                value = path.read_text(encoding="utf-8").strip()
        if not value:
            raise ConfigurationError(
                f"secret {name} is missing: set SPORTELLO_SECRET_{name} or mount a file named {name}"
                + (f" in {self._dir}" if self._dir else " and set SPORTELLO_SECRETS_DIR")
            )
        return value


def _resolve_secrets(node: Any, secrets: SecretSource) -> Any:
    """Replace every `{secret: NAME}` mapping in a parsed YAML tree by the secret's value."""
    if isinstance(node, dict):
        if set(node) == {"secret"}:
            return secrets.get(str(node["secret"]))
        return {key: _resolve_secrets(value, secrets) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_secrets(item, secrets) for item in node]
    return node


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PagoPAConfig(_Config):
    segregation_code: str = Field(pattern=r"^[0-9]{2}$", description="codice segregazione (aux digit 3)")
    broker_id: str = Field(pattern=r"^[0-9]{11}$", description="idBrokerPA")
    station_id: str = Field(pattern=r"^[0-9]{11}_[0-9]{2}$", description="idStazione")
    ibans: tuple[str, ...] = Field(min_length=1, description="accredit IBANs of the Comune")
    gpd_base_url: AnyHttpUrl
    gpd_subscription_key: SecretStr
    checkout_base_url: AnyHttpUrl
    checkout_subscription_key: SecretStr | None = Field(default=None, description="Checkout EC API key")
    nodo_base_url: AnyHttpUrl | None = Field(
        default=None, description="the Nodo's nodeForPa endpoint (reporting flows); none: flows are uploaded")
    nodo_password: SecretStr | None = Field(default=None, description="the station's password on the Nodo (8-15)")

    @field_validator("nodo_password")
    @classmethod
    def _nodo_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 8 <= len(value.get_secret_value()) <= 15:
            raise ValueError("nodo_password must be 8-15 characters (stPassword)")
        return value

    @field_validator("ibans")
    @classmethod
    def _valid_ibans(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = []
        for raw in value:
            try:
                cleaned.append(str(IBAN(raw)))
            except SchwiftyException as exc:
                raise ValueError(f"invalid IBAN ({type(exc).__name__})") from None
        return tuple(cleaned)


class IOService(_Config):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,40}$", description="our name: anagrafe, tributi, ...")
    service_id: str = Field(min_length=1, max_length=64)
    primary_key: SecretStr
    secondary_key: SecretStr | None = None


class AppIOConfig(_Config):
    base_url: AnyHttpUrl
    services: tuple[IOService, ...] = Field(min_length=1)

    def service(self, name: str) -> IOService:
        for service in self.services:
            if service.name == name:
                return service
        raise ConfigurationError(f"no IO service named {name!r}")


_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
SPID_ATTRIBUTES = frozenset({
    "spidCode", "name", "familyName", "placeOfBirth", "countyOfBirth", "dateOfBirth", "gender",
    "companyName", "registeredOffice", "fiscalNumber", "ivaCode", "idCard", "mobilePhone", "email",
    "address", "expirationDate", "digitalAddress", "domicileStreetAddress", "domicilePostalCode",
    "domicileMunicipality", "domicileProvince", "domicileNation", "companyFiscalNumber",
})


def _spid_url(value: AnyHttpUrl, what: str) -> AnyHttpUrl:
    """SPID wants HTTPS URLs without a custom port; plain HTTP only on loopback (the sandbox)."""
    if value.host in _LOOPBACK_HOSTS:
        return value
    if value.scheme != "https" or value.port not in (None, 443) or ":443" in str(value).split("/")[2]:
        raise ValueError(f"{what} must be an https URL without a port")
    return value


class CieConfig(_Config):
    """The Comune as a CIE OpenID Connect Federation Relying Party (three keys, as the rules want)."""

    client_id: AnyHttpUrl = Field(description="the RP's entity id; its Entity Configuration is served at "
                                              "<client_id>/.well-known/openid-federation")
    provider: AnyHttpUrl = Field(description="the CIE OpenID Provider's entity id")
    trust_anchor: AnyHttpUrl = Field(description="the federation's trust anchor entity id")
    trust_anchor_jwks: str | None = Field(
        default=None, description="the trust anchor's JWKS (JSON) as the federation publishes it: pinned, "
                                  "required unless trust_anchor_discovery")
    trust_anchor_discovery: bool = Field(
        default=False, description="sandbox/dev only: trust the anchor's self-signed configuration as fetched "
                                   "from its URL instead of pinned keys")
    authority_hints: tuple[AnyHttpUrl, ...] = Field(
        default=(), description="the RP's immediate superiors (an aggregator, or the anchor); default: the anchor")
    trust_marks: tuple[dict[str, str], ...] = Field(
        default=(), description="trust marks issued to the RP at onboarding: [{id, trust_mark: <JWT>}]")
    required_trust_marks: tuple[str, ...] = Field(
        default=(), description="trust mark ids the OP must show, verified against the anchor's issuers")
    offline_access: bool = Field(
        default=False, description="ask the OP for a refresh token (scope offline_access, prompt consent): a "
                                   "CIE session then lasts only while the OP's grant does; logout revokes it")
    federation_key: SecretStr = Field(description="signs the Entity Configuration")
    signing_key: SecretStr = Field(description="signs request objects and client assertions")
    encryption_key: SecretStr = Field(description="decrypts the OP's userinfo (RSA-OAEP)")
    redirect_uri: AnyHttpUrl | None = Field(default=None, description="default: <client_id>/callback")
    contacts: tuple[str, ...] = ()

    @field_validator("client_id", "redirect_uri")
    @classmethod
    def _https(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        return None if value is None else _spid_url(value, "CIE client_id and redirect_uri")

    @field_validator("trust_anchor_jwks")
    @classmethod
    def _jwks(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            keys = json.loads(value).get("keys")
        except (ValueError, AttributeError):
            keys = None
        if not isinstance(keys, list) or not keys or not all(
                isinstance(k, dict) and k.get("kty") == "RSA" and k.get("kid") and "d" not in k for k in keys):
            raise ValueError("trust_anchor_jwks must be a JWKS of public RSA keys with kid")
        return value

    @field_validator("trust_marks")
    @classmethod
    def _marks(cls, value: tuple[dict[str, str], ...]) -> tuple[dict[str, str], ...]:
        if any(set(m) != {"id", "trust_mark"} or m["trust_mark"].count(".") != 2 for m in value):
            raise ValueError("each trust mark is {id, trust_mark: <JWT>}")
        return value

    @model_validator(mode="after")
    def _pinned_anchor(self) -> CieConfig:
        """Production must pin the anchor's keys: discovery trusts whoever answers at its URL."""
        if self.trust_anchor_jwks is None and not self.trust_anchor_discovery:
            raise ValueError("pin the trust anchor's keys (trust_anchor_jwks); only a sandbox may set "
                             "trust_anchor_discovery: true")
        return self


class SpidConfig(_Config):
    """The Comune as a SPID public-sector Service Provider (and CIE relying party)."""

    entity_id: AnyHttpUrl
    signing_key: SecretStr
    signing_certificate: str = Field(min_length=1)
    cie_client_id: AnyHttpUrl | None = None
    acs_url: AnyHttpUrl | None = Field(
        default=None, description="AssertionConsumerService (index 0); default: the entity id's origin + "
                                  "/v1/tenants/<tenant>/auth/spid/acs")
    slo_url: AnyHttpUrl | None = Field(default=None, description="SingleLogoutService; default beside the ACS")
    idp_metadata: tuple[str, ...] = Field(
        default=(), description="IdP metadata sources: https/http URLs or files (e.g. AgID's registry, the twin)")
    attributes: tuple[str, ...] = Field(
        default=("fiscalNumber", "name", "familyName", "email"), min_length=1,
        description="the AttributeConsumingService (index 0): SPID attribute names")
    service_name: str | None = Field(default=None, max_length=120, description="ServiceName; default tenant name")
    organization_url: AnyHttpUrl | None = None
    contact_email: str = Field(default="protocollo@example.invalid", pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    contact_phone: str | None = Field(default=None, pattern=r"^\+39[0-9]{6,12}$")
    default_level: int = Field(default=2, ge=1, le=3)
    clock_skew_seconds: int = Field(default=60, ge=0, le=300)
    return_urls: tuple[AnyHttpUrl, ...] = Field(
        default=(), description="portal URLs the ACS may send the browser back to (with a one-time code)")
    cie: CieConfig | None = Field(default=None, description="CIE login (OpenID Connect Federation)")

    @field_validator("entity_id", "acs_url", "slo_url")
    @classmethod
    def _spid_urls(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        return None if value is None else _spid_url(value, "SPID entity id, ACS and SLO URLs")

    @field_validator("attributes")
    @classmethod
    def _known_attributes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = set(value) - SPID_ATTRIBUTES
        if unknown:
            raise ValueError(f"not SPID attributes: {', '.join(sorted(unknown))}")
        if "fiscalNumber" not in value:
            raise ValueError("fiscalNumber must be requested (it is the citizen's identity)")
        return value


class PdndConfig(_Config):
    token_url: AnyHttpUrl
    client_id: str = Field(min_length=1)
    key_id: str = Field(min_length=1)
    private_key: SecretStr
    purposes: dict[str, str] = Field(description="e-service (C001, C003, C030, ...) -> purposeId")
    anpr_base_url: AnyHttpUrl = Field(description="root of ANPR's ModI gateway, e.g. .../govway/rest/in")
    anpr_ws6001_url: AnyHttpUrl
    assertion_audience: str = Field(default="auth.interop.pagopa.it/client-assertion", min_length=3,
                                    description="`aud` of the client assertion (PDND environment)")
    anpr_audience_base: str = Field(
        default="https://modipa.anpr.interno.it/govway/rest/in/MinInternoPortaANPR", min_length=8,
        description="the e-service audience (ModI `aud`) is <this>/<e-service>/v1, as on the PDND card")
    daily_quotas: dict[str, int] = Field(default_factory=dict, description="e-service -> calls per day (override)")
    registry_officer_surname: str = Field(default="UFFICIALE", pattern=r"^[A-Za-z' .-]{1,80}$")
    registry_officer_name: str = Field(default="ANAGRAFE", pattern=r"^[A-Za-z' .-]{1,80}$")
    ws6001_send_type: str = Field(default="PROD", pattern=r"^(TEST|PRE_SUB|PROD)$")
    verification_url: AnyHttpUrl | None = Field(
        default=None, description="public page that verifies a certificate code (printed as QR)")


class Tenant(_Config):
    """A Comune served by this installation."""

    id: TenantId
    name: str = Field(min_length=3, max_length=120)
    fiscal_code: str = Field(description="the Comune's 11-digit fiscal code")
    istat_code: str = Field(pattern=r"^[0-9]{6}$")
    ipa_code: str = Field(min_length=2, max_length=20)
    operators: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="citizen fiscal code -> roles (operator, admin)"
    )
    pagopa: PagoPAConfig | None = None
    appio: AppIOConfig | None = None
    spid: SpidConfig | None = None
    pdnd: PdndConfig | None = None

    @field_validator("fiscal_code")
    @classmethod
    def _organisation_fiscal_code(cls, value: str) -> str:
        if not iva.is_valid(value):
            raise ValueError("not a valid 11-digit organisation fiscal code")
        return value

    @field_validator("operators")
    @classmethod
    def _operator_codes(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for fiscal_code, roles in value.items():
            if not codicefiscale.is_valid(fiscal_code):
                raise ValueError("an operator key is not a valid personal fiscal code")
            if not set(roles) <= {"operator", "admin"}:
                raise ValueError("operator roles must be 'operator' or 'admin'")
        return value

    @model_validator(mode="after")
    def _station_belongs_to_broker(self) -> Tenant:
        if self.pagopa and not self.pagopa.station_id.startswith(self.pagopa.broker_id):
            raise ValueError("pagopa.station_id must start with pagopa.broker_id")
        return self


class TenantRegistry:
    """The tenants of this installation, by id. Immutable once loaded."""

    def __init__(self, tenants: Mapping[str, Tenant]) -> None:
        self._tenants = dict(tenants)

    def get(self, tenant_id: str) -> Tenant:
        try:
            return self._tenants[tenant_id]
        except (KeyError, TypeError):
            raise UnknownTenant(f"no tenant {tenant_id!r}") from None

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._tenants.values())

    def __len__(self) -> int:
        return len(self._tenants)

    def ids(self) -> list[str]:
        return sorted(self._tenants)


def load_tenants(folder: Path, secrets: SecretSource) -> TenantRegistry:
    """Load every `*.yaml` in `folder`; any invalid file or missing secret stops start-up."""
    tenants: dict[str, Tenant] = {}
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigurationError(f"no tenant files (*.yaml) in {folder}")
    for path in files:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{path.name}: not valid YAML ({type(exc).__name__})") from None
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{path.name}: a tenant file must be a mapping")
        try:
            tenant = Tenant.model_validate(_resolve_secrets(raw, secrets))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"{path.name}: {problems}") from None
        if tenant.id in tenants:
            raise ConfigurationError(f"{path.name}: tenant id {tenant.id!r} defined twice")
        tenants[tenant.id] = tenant
    return TenantRegistry(tenants)
