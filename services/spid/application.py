"""Login use cases: start a SPID login, consume the ACS response, issue and refresh tokens, log out.

Why here: the rules are in `domain/`; this module adds the state (pending logins, used assertions,
sessions) in one transaction per step, so a response is accepted at most once and a refresh
token works at most once. Tokens: a short-lived access JWT (TokenIssuer) plus an opaque refresh
token stored only as a SHA-256 hash, rotated on every use and revoked at logout.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import sqlalchemy as sa
import structlog

from services.spid import models
from services.spid.domain import saml
from services.spid.domain.authn import Binding, PendingLogin, authn_request, encode, logout_request
from services.spid.domain.errors import AssertionReplayed, InvalidGrant, UnknownIdentityProvider
from services.spid.domain.metadata import IdpRegistry, parse_idp_metadata, service_provider, sp_metadata
from services.spid.domain.response import ResponseValidator, SpidLogin
from sportello.db import Database
from sportello.errors import Forbidden, ValidationFailed
from sportello.tenants import Tenant, TenantRegistry
from sportello.tokens import Role, TokenIssuer

log = structlog.get_logger("spid")

PENDING_LIFETIME = dt.timedelta(minutes=10)
CODE_LIFETIME = dt.timedelta(seconds=60)
REFRESH_LIFETIME = dt.timedelta(hours=8)
IDP_CACHE_SECONDS = 3600.0


class MetadataSource(Protocol):
    """Port: fetches an IdP metadata document (AgID registry URL, the twin, or a file)."""

    def fetch(self, location: str) -> bytes: ...


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def roles_for(tenant: Tenant, fiscal_code: str) -> list[Role]:
    """Every login is a citizen; the tenant's configuration may add operator/admin."""
    return ["citizen", *tenant.operators.get(fiscal_code, ())]  # type: ignore[list-item]


class LoginApplication:
    def __init__(self, database: Database, tenants: TenantRegistry, tokens: TokenIssuer, metadata: MetadataSource,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.db = database
        self.tenants = tenants
        self.tokens = tokens
        self.metadata = metadata
        self.clock = clock
        self._idps: dict[str, tuple[float, IdpRegistry]] = {}

    # -- IdPs --------------------------------------------------------------------------------------
    def idps(self, tenant_id: str, *, refresh: bool = False) -> IdpRegistry:
        cached = self._idps.get(tenant_id)
        if cached and not refresh and time.monotonic() - cached[0] < IDP_CACHE_SECONDS:
            return cached[1]
        tenant = self.tenants.get(tenant_id)
        if tenant.spid is None:
            raise UnknownIdentityProvider(f"tenant {tenant_id!r} has no SPID configuration")
        found = []
        for location in tenant.spid.idp_metadata:
            try:
                found.extend(parse_idp_metadata(self.metadata.fetch(location)))
            except Exception as exc:  # noqa: BLE001 - one unreachable IdP must not block the others
                log.warning("spid_idp_metadata_unavailable", tenant=tenant_id, error=type(exc).__name__)
        registry = IdpRegistry(found)
        if len(registry):
            self._idps[tenant_id] = (time.monotonic(), registry)
        return registry

    def _idp(self, tenant_id: str, entity_id: str) -> Any:
        try:
            return self.idps(tenant_id).get(entity_id)
        except UnknownIdentityProvider:
            return self.idps(tenant_id, refresh=True).get(entity_id)

    def list_idps(self, tenant_id: str) -> list[dict[str, str]]:
        return [{"entity_id": i.entity_id, "name": i.name} for i in self.idps(tenant_id)]

    def metadata_xml(self, tenant_id: str) -> str:
        return sp_metadata(service_provider(self.tenants.get(tenant_id))).decode()

    # -- login -------------------------------------------------------------------------------------
    def start_login(self, tenant_id: str, idp_entity_id: str, *, level: int | None = None,
                    binding: Binding = "redirect", return_url: str | None = None) -> dict[str, Any]:
        tenant = self.tenants.get(tenant_id)
        sp = service_provider(tenant)
        if binding not in ("redirect", "post"):
            raise ValidationFailed("binding must be 'redirect' or 'post'")
        if return_url is not None and return_url not in sp.return_urls:
            raise ValidationFailed("return_url is not one of the Comune's registered portal URLs")
        level = sp.default_level if level is None else level
        idp = self._idp(tenant_id, idp_entity_id)
        now = self.clock()
        element, request_id = authn_request(sp, idp, level=level, binding=binding, now=now)
        relay_state = secrets.token_urlsafe(24)
        message = encode(element, key_pem=sp.key_pem, cert_pem=sp.cert_pem, binding=binding, relay_state=relay_state)
        with self.db.transaction() as session:
            session.execute(sa.delete(models.pending_logins).where(models.pending_logins.c.expires_at < now))
            session.execute(sa.insert(models.pending_logins).values(
                request_id=request_id, tenant=tenant_id, idp_entity_id=idp.entity_id, level=level, issued_at=now,
                expires_at=now + PENDING_LIFETIME, acs_url=sp.acs_url, relay_state=relay_state,
                return_url=return_url))
        log.info("spid_login_started", tenant=tenant_id, level=level, binding=binding)
        return {"binding": message.binding, "url": message.url, "form": message.form,
                "html": message.html_form() if message.binding == "post" else None}

    def _take_pending(self, session: Any, tenant_id: str) -> Callable[[str], PendingLogin | None]:
        def take(request_id: str) -> PendingLogin | None:
            row = session.execute(sa.delete(models.pending_logins).where(
                models.pending_logins.c.request_id == request_id, models.pending_logins.c.tenant == tenant_id,
            ).returning(*models.pending_logins.c)).mappings().first()
            if row is None or _aware(row["expires_at"]) < self.clock():
                return None
            return PendingLogin(request_id=row["request_id"], tenant=row["tenant"],
                                idp_entity_id=row["idp_entity_id"], level=row["level"],
                                issued_at=_aware(row["issued_at"]), acs_url=row["acs_url"],
                                relay_state=row["relay_state"], return_url=row["return_url"])
        return take

    def complete_login(self, tenant_id: str, saml_response: str, relay_state: str | None = None) -> dict[str, Any]:
        """The ACS: validate, record the assertion (replay), open a session with a one-time code."""
        tenant = self.tenants.get(tenant_id)
        validator = ResponseValidator(service_provider(tenant), self.idps(tenant_id))
        now = self.clock()
        rejected: Exception | None = None
        with self.db.transaction() as session:
            try:
                login = validator.validate(saml_response, take_pending=self._take_pending(session, tenant_id),
                                           now=now)
                self._remember_assertion(session, tenant_id, login, now)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the pending login is consumed
                rejected = exc
            else:
                code = secrets.token_urlsafe(32)
                session.execute(sa.insert(models.sessions).values(
                    id=str(uuid.uuid4()), tenant=tenant_id, subject=login.citizen.fiscal_code, level=login.level,
                    method="spid", idp_entity_id=login.idp_entity_id, name_id=login.name_id,
                    name_qualifier=login.name_qualifier, session_index=login.session_index, code_hash=_hash(code),
                    code_expires_at=now + CODE_LIFETIME, created_at=now))
        if rejected is not None:
            # the pending request stays consumed (committed): a second try needs a new login
            log.info("spid_login_rejected", tenant=tenant_id, reason=getattr(rejected, "code", type(rejected).__name__))
            raise rejected
        log.info("spid_login_completed", tenant=tenant_id, level=login.level)
        return {"code": code, "expires_in": int(CODE_LIFETIME.total_seconds()), "return_url": login.return_url}

    def _remember_assertion(self, session: Any, tenant_id: str, login: SpidLogin, now: dt.datetime) -> None:
        table = models.used_assertions
        session.execute(sa.delete(table).where(table.c.expires_at < now - dt.timedelta(minutes=5)))
        seen = session.execute(sa.select(table.c.assertion_id).where(
            table.c.idp_entity_id == login.idp_entity_id, table.c.assertion_id == login.assertion_id)).first()
        if seen is not None:
            raise AssertionReplayed("this assertion was already used to log in")
        session.execute(sa.insert(table).values(idp_entity_id=login.idp_entity_id, assertion_id=login.assertion_id,
                                                tenant=tenant_id, expires_at=login.assertion_expires))

    # -- tokens ------------------------------------------------------------------------------------
    def _tokens(self, row: Any, tenant: Tenant, session: Any, now: dt.datetime) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(32)
        session.execute(sa.update(models.sessions).where(models.sessions.c.id == row["id"]).values(
            code_hash=None, code_expires_at=None, refresh_hash=_hash(refresh),
            refresh_expires_at=now + REFRESH_LIFETIME))
        access = self.tokens.issue(subject=row["subject"], tenant=tenant.id, level=row["level"],
                                   roles=roles_for(tenant, row["subject"]), now=now.timestamp())
        return {"access_token": access, "token_type": "Bearer", "expires_in": self.tokens.lifetime,
                "refresh_token": refresh, "refresh_expires_in": int(REFRESH_LIFETIME.total_seconds())}

    def exchange_code(self, tenant_id: str, code: str) -> dict[str, Any]:
        tenant = self.tenants.get(tenant_id)
        now = self.clock()
        with self.db.transaction() as session:
            row = session.execute(sa.select(models.sessions).where(
                models.sessions.c.code_hash == _hash(code)).with_for_update()).mappings().first()
            if row is None or row["revoked_at"] is not None or _aware(row["code_expires_at"]) < now:
                raise InvalidGrant("login code unknown, used or expired")
            if row["tenant"] != tenant_id:
                raise InvalidGrant("login code unknown, used or expired")
            return self._tokens(row, tenant, session, now)

    def refresh(self, tenant_id: str, refresh_token: str) -> dict[str, Any]:
        tenant = self.tenants.get(tenant_id)
        now = self.clock()
        with self.db.transaction() as session:
            row = session.execute(sa.select(models.sessions).where(
                models.sessions.c.refresh_hash == _hash(refresh_token)).with_for_update()).mappings().first()
            if (row is None or row["tenant"] != tenant_id or row["revoked_at"] is not None
                    or _aware(row["refresh_expires_at"]) < now):
                raise InvalidGrant("refresh token unknown, used, expired or revoked")
            return self._tokens(row, tenant, session, now)

    def logout(self, tenant_id: str, subject: str, refresh_token: str, *,
               binding: Binding = "redirect") -> dict[str, Any]:
        """Revoke the session; answer the IdP single-logout request the browser should carry."""
        tenant = self.tenants.get(tenant_id)
        now = self.clock()
        with self.db.transaction() as session:
            row = session.execute(sa.select(models.sessions).where(
                models.sessions.c.refresh_hash == _hash(refresh_token))).mappings().first()
            if row is None or row["tenant"] != tenant_id:
                raise InvalidGrant("refresh token unknown")
            if row["subject"] != subject:
                raise Forbidden("this session belongs to someone else")
            session.execute(sa.update(models.sessions).where(models.sessions.c.id == row["id"]).values(
                revoked_at=now, refresh_hash=None))
        result: dict[str, Any] = {"revoked": True, "idp_logout": None}
        if row["method"] == "spid" and row["name_id"]:
            try:
                sp = service_provider(tenant)
                idp = self._idp(tenant_id, row["idp_entity_id"])
                element = logout_request(sp, idp, name_id=row["name_id"], name_qualifier=row["name_qualifier"],
                                         session_index=row["session_index"], binding=binding, now=now)
                message = encode(element, key_pem=sp.key_pem, cert_pem=sp.cert_pem, binding=binding,
                                 relay_state=secrets.token_urlsafe(16))
                result["idp_logout"] = {"binding": message.binding, "url": message.url, "form": message.form}
            except (UnknownIdentityProvider, ValidationFailed):
                pass
        log.info("spid_logout", tenant=tenant_id)
        return result


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


__all__ = ["LoginApplication", "MetadataSource", "roles_for", "saml"]
