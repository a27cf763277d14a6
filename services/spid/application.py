"""Login use cases: start a SPID login, consume the ACS response, issue and refresh tokens, log out.

Why here: the rules are in `domain/`; this module adds the state (pending logins, used assertions,
sessions) in one transaction per step, so a response is accepted at most once and a refresh
token works at most once. Tokens: a short-lived access JWT (TokenIssuer) plus an opaque refresh
token stored only as a SHA-256 hash, rotated on every use and revoked at logout.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

import sqlalchemy as sa
import structlog

from services.spid import models
from services.spid.domain import cie, saml
from services.spid.domain.authn import Binding, PendingLogin, authn_request, encode, logout_request
from services.spid.domain.errors import (
    AssertionReplayed,
    AuthenticationFailed,
    InvalidGrant,
    LoginCancelled,
    ProviderUnavailable,
    ResponseRejected,
    UnknownIdentityProvider,
    UnknownRequest,
)
from services.spid.domain.federation import FederationError, TrustChain, resolve_trust_chain
from services.spid.domain.logout import (
    PendingLogout,
    logout_response,
    read_logout_request,
    read_logout_response,
    read_message,
)
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


class OidcHttp(Protocol):
    """Port: HTTP to the CIE federation; answers (status, content type, body) or raises ProviderUnavailable."""

    def get(self, url: str, *, bearer: str | None = None) -> tuple[int, str, str]: ...

    def post_form(self, url: str, data: dict[str, str]) -> tuple[int, str, str]: ...


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def roles_for(tenant: Tenant, fiscal_code: str) -> list[Role]:
    """Every login is a citizen; the tenant's configuration may add operator/admin."""
    return ["citizen", *tenant.operators.get(fiscal_code, ())]  # type: ignore[list-item]


class LoginApplication:
    def __init__(self, database: Database, tenants: TenantRegistry, tokens: TokenIssuer, metadata: MetadataSource,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
                 oidc: OidcHttp | None = None) -> None:
        self.db = database
        self.tenants = tenants
        self.tokens = tokens
        self.metadata = metadata
        self.clock = clock
        self.oidc = oidc
        self._idps: dict[str, tuple[float, IdpRegistry]] = {}
        self._chains: dict[str, TrustChain] = {}

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
        """Rotate our refresh token; a CIE session holding the OP's refresh token is refreshed there first.

        Why: with `offline_access` the OP decides how long the citizen's grant lasts; if the OP
        refuses (revoked, expired) our session ends too. The OP call happens before our row lock.
        """
        tenant = self.tenants.get(tenant_id)
        now = self.clock()

        def valid(row: Any) -> bool:
            return not (row is None or row["tenant"] != tenant_id or row["revoked_at"] is not None
                        or row["refresh_expires_at"] is None or _aware(row["refresh_expires_at"]) < now)

        with self.db.transaction() as session:
            first = session.execute(sa.select(models.sessions).where(
                models.sessions.c.refresh_hash == _hash(refresh_token))).mappings().first()
        if first is None or not valid(first):
            raise InvalidGrant("refresh token unknown, used, expired or revoked")
        sealed = self._refresh_at_provider(tenant_id, first) if first["method"] == "cie" else None
        with self.db.transaction() as session:
            row = session.execute(sa.select(models.sessions).where(
                models.sessions.c.refresh_hash == _hash(refresh_token)).with_for_update()).mappings().first()
            if row is None or not valid(row):
                raise InvalidGrant("refresh token unknown, used, expired or revoked")
            if sealed is not None:
                session.execute(sa.update(models.sessions).where(models.sessions.c.id == row["id"]).values(
                    provider_tokens=sealed))
            return self._tokens(row, tenant, session, now)

    def _refresh_at_provider(self, tenant_id: str, row: Any) -> str | None:
        """The OP's refresh_token grant for a CIE session that has one; the new tokens, sealed."""
        if not row["provider_tokens"]:
            return None
        rp = cie.relying_party(self.tenants.get(tenant_id))
        tokens = cie.unseal(rp, row["provider_tokens"])
        if not tokens.get("refresh_token"):
            return None
        op = cie.provider_metadata(self.cie_chain(tenant_id))
        status, _, body = self._http().post_form(op["token_endpoint"], cie.refresh_request(
            rp, op, refresh_token=tokens["refresh_token"], now=self.clock().timestamp()))
        try:
            answer = json.loads(body) if status == 200 else {}
        except ValueError:
            answer = {}
        if status != 200 or not isinstance(answer, dict) or not answer.get("access_token"):
            with self.db.transaction() as session:
                session.execute(sa.update(models.sessions).where(models.sessions.c.id == row["id"]).values(
                    revoked_at=self.clock(), refresh_hash=None, provider_tokens=None))
            log.info("cie_refresh_refused", tenant=tenant_id, status=status)
            raise InvalidGrant("the CIE provider ended this session")
        if answer.get("id_token"):
            cie.validate_refreshed_id_token(str(answer["id_token"]), rp, op, tokens["sub"])
        renewed = {"access_token": str(answer["access_token"]), "sub": tokens["sub"],
                   "refresh_token": str(answer.get("refresh_token") or tokens["refresh_token"])}
        log.info("cie_refreshed_at_provider", tenant=tenant_id)
        return cie.seal(rp, renewed)

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
                revoked_at=now, refresh_hash=None, provider_tokens=None))
        result: dict[str, Any] = {"revoked": True, "idp_logout": None}
        if row["method"] == "cie" and row["provider_tokens"]:
            result["provider_revoked"] = self._revoke_at_provider(tenant_id, row["provider_tokens"])
        if row["method"] == "spid" and row["name_id"]:
            try:
                sp = service_provider(tenant)
                idp = self._idp(tenant_id, row["idp_entity_id"])
                element = logout_request(sp, idp, name_id=row["name_id"], name_qualifier=row["name_qualifier"],
                                         session_index=row["session_index"], binding=binding, now=now)
                with self.db.transaction() as session:
                    session.execute(sa.delete(models.pending_logouts).where(models.pending_logouts.c.expires_at < now))
                    session.execute(sa.insert(models.pending_logouts).values(
                        request_id=element.get("ID"), tenant=tenant_id, idp_entity_id=idp.entity_id,
                        expires_at=now + PENDING_LIFETIME))
                message = encode(element, key_pem=sp.key_pem, cert_pem=sp.cert_pem, binding=binding,
                                 relay_state=secrets.token_urlsafe(16))
                result["idp_logout"] = {"binding": message.binding, "url": message.url, "form": message.form}
            except (UnknownIdentityProvider, ValidationFailed):
                pass
        log.info("spid_logout", tenant=tenant_id)
        return result

    def _revoke_at_provider(self, tenant_id: str, sealed: str) -> bool:
        """CIE logout: end the OP's grant at its revocation_endpoint (RFC 7009, private_key_jwt).

        Our session is already revoked; an OP that cannot be reached is logged, not an error.
        """
        try:
            rp = cie.relying_party(self.tenants.get(tenant_id))
            tokens = cie.unseal(rp, sealed)
            op = cie.provider_metadata(self.cie_chain(tenant_id))
            if not op.get("revocation_endpoint"):
                return False
            # the access token first: the reference OP ends the whole grant through it (and answers 400 to a
            # refresh token), RFC 7009 servers may not; then the refresh token. One 200 = the OP confirmed.
            answers = []
            for hint in ("access_token", "refresh_token"):
                if tokens.get(hint):
                    status, _, _ = self._http().post_form(op["revocation_endpoint"], cie.revocation_request(
                        rp, op, token=tokens[hint], hint=hint, now=self.clock().timestamp()))
                    answers.append(status)
            revoked = 200 in answers
        except (ProviderUnavailable, FederationError, ResponseRejected, UnknownIdentityProvider) as exc:
            log.warning("cie_provider_revocation_failed", tenant=tenant_id, error=type(exc).__name__)
            return False
        log.info("cie_provider_revoked", tenant=tenant_id, revoked=revoked, statuses=answers)
        return revoked

    def single_logout(self, tenant_id: str, binding: Binding, form: dict[str, str] | None = None,
                      query: str | None = None) -> dict[str, Any]:
        """The SingleLogoutService: an IdP-initiated LogoutRequest, or the IdP's answer to ours.

        LogoutRequest: revoke the NameID's sessions and answer with a signed LogoutResponse the
        browser carries back to the IdP. LogoutResponse: accepted only for a request we sent.
        """
        if binding not in ("redirect", "post"):
            raise ValidationFailed("binding must be 'redirect' or 'post'")
        tenant = self.tenants.get(tenant_id)
        sp = service_provider(tenant)
        message = read_message(binding, form=form, query=query)
        now = self.clock()
        if message.param == "SAMLResponse":
            with self.db.transaction() as session:
                def take(request_id: str) -> PendingLogout | None:
                    row = session.execute(sa.delete(models.pending_logouts).where(
                        models.pending_logouts.c.request_id == request_id,
                        models.pending_logouts.c.tenant == tenant_id,
                    ).returning(*models.pending_logouts.c)).mappings().first()
                    if row is None or _aware(row["expires_at"]) < now:
                        return None
                    return PendingLogout(row["request_id"], row["idp_entity_id"])
                complete = read_logout_response(message, sp, self.idps(tenant_id), now, take)
            log.info("spid_logout_confirmed", tenant=tenant_id, complete=complete)
            return {"kind": "logout_response", "status": "logged_out" if complete else "partial_logout"}
        order = read_logout_request(message, sp, self.idps(tenant_id), now)
        idp = self._idp(tenant_id, order.idp_entity_id)
        table = models.sessions
        with self.db.transaction() as session:
            match = sa.and_(table.c.tenant == tenant_id, table.c.idp_entity_id == order.idp_entity_id,
                            table.c.name_id == order.name_id, table.c.revoked_at.is_(None))
            if order.session_indexes:
                match = sa.and_(match, table.c.session_index.in_(order.session_indexes))
            revoked = len(session.execute(sa.update(table).where(match).values(
                revoked_at=now, refresh_hash=None, code_hash=None).returning(table.c.id)).all())
        element = logout_response(sp, idp, in_response_to=order.request_id, binding=binding, now=now)
        reply = encode(element, key_pem=sp.key_pem, cert_pem=sp.cert_pem, binding=binding,
                       relay_state=order.relay_state or "", param="SAMLResponse")
        log.info("spid_idp_logout", tenant=tenant_id, sessions=revoked)
        return {"kind": "logout_request", "revoked": revoked,
                "reply": {"binding": reply.binding, "url": reply.url, "form": reply.form,
                          "html": reply.html_form() if reply.binding == "post" else None}}

    # -- CIE (OpenID Connect Federation) --------------------------------------------------------------
    def _http(self) -> OidcHttp:
        if self.oidc is None:
            raise UnknownIdentityProvider("CIE login is not enabled in this installation")
        return self.oidc

    def _fetch_statement(self, url: str) -> str:
        status, content_type, body = self._http().get(url)
        if status != 200:
            raise FederationError(f"federation endpoint answered {status}")
        if not content_type.startswith(("application/entity-statement+jwt", "application/jose")):
            raise FederationError("federation endpoint did not answer application/entity-statement+jwt")
        return body.strip()

    def cie_chain(self, tenant_id: str, *, refresh: bool = False) -> TrustChain:
        """The OP's trust chain, cached until the earliest expiry in it."""
        rp = cie.relying_party(self.tenants.get(tenant_id))
        cached = self._chains.get(tenant_id)
        now = self.clock().timestamp()
        if cached and not refresh and cached.expires_at > now + 60:
            return cached
        chain = resolve_trust_chain(rp.provider, rp.trust_anchor, self._fetch_statement,
                                    trust_anchor_jwks=rp.trust_anchor_jwks, now=now,
                                    allow_discovery=rp.trust_anchor_discovery,
                                    required_trust_marks=rp.required_trust_marks)
        log.info("cie_trust_chain_resolved", tenant=tenant_id, hops=len(chain.statements) - 2,
                 expires_in=int(chain.expires_at - now), pinned=rp.trust_anchor_jwks is not None)
        self._chains[tenant_id] = chain
        return chain

    def cie_entity_configuration(self, tenant_id: str) -> str:
        return cie.entity_configuration(cie.relying_party(self.tenants.get(tenant_id)), self.clock().timestamp())

    def start_cie_login(self, tenant_id: str, *, level: int | None = None,
                        return_url: str | None = None) -> dict[str, Any]:
        tenant = self.tenants.get(tenant_id)
        rp = cie.relying_party(tenant)
        if return_url is not None and return_url not in service_provider(tenant).return_urls:
            raise ValidationFailed("return_url is not one of the Comune's registered portal URLs")
        op = cie.provider_metadata(self.cie_chain(tenant_id))
        now = self.clock()
        url, pending = cie.authorization_request(rp, op, level=level or rp.default_level, now=now.timestamp())
        with self.db.transaction() as session:
            table = models.cie_pending
            session.execute(sa.delete(table).where(table.c.expires_at < now))
            session.execute(sa.insert(table).values(
                state=pending.state, tenant=tenant_id, provider=rp.provider, nonce=pending.nonce,
                code_verifier=pending.code_verifier, level=pending.level, expires_at=now + PENDING_LIFETIME,
                return_url=return_url))
        log.info("cie_login_started", tenant=tenant_id, level=pending.level)
        return {"url": url}

    def complete_cie_login(self, tenant_id: str, *, state: str, code: str | None = None,
                           error: str | None = None, issuer: str | None = None) -> dict[str, Any]:
        """The redirect_uri: code -> tokens (private_key_jwt, PKCE) -> ID token and userinfo -> a session."""
        tenant = self.tenants.get(tenant_id)
        rp = cie.relying_party(tenant)
        now = self.clock()
        table = models.cie_pending
        with self.db.transaction() as session:
            row = session.execute(sa.delete(table).where(table.c.state == state, table.c.tenant == tenant_id)
                                  .returning(*table.c)).mappings().first()
        if row is None or _aware(row["expires_at"]) < now:
            raise UnknownRequest("state matches no pending CIE login (expired, used or never sent)")
        if error:
            log.info("cie_login_rejected", tenant=tenant_id, reason=error[:40])
            if error == "access_denied":
                raise LoginCancelled("the citizen cancelled the CIE login or refused consent")
            raise AuthenticationFailed("the CIE provider did not authenticate the citizen")
        if not code:
            raise ResponseRejected("the callback carries neither code nor error")
        pending = cie.PendingCie(state=row["state"], nonce=row["nonce"], code_verifier=row["code_verifier"],
                                 level=row["level"])
        op = cie.provider_metadata(self.cie_chain(tenant_id))
        if issuer is not None and issuer.rstrip("/") != str(op["issuer"]).rstrip("/"):
            raise ResponseRejected("the callback's iss is not our CIE provider (mix-up)")
        status, _, body = self._http().post_form(op["token_endpoint"], cie.token_request(
            rp, op, code=code, pending=pending, now=now.timestamp()))
        try:
            answer = json.loads(body) if status == 200 else {}
        except ValueError:
            answer = {}
        if status != 200 or not isinstance(answer, dict) or not answer.get("id_token") or not answer.get(
                "access_token"):
            raise AuthenticationFailed(f"the CIE token endpoint refused the code ({status})")
        id_claims = cie.validate_id_token(str(answer["id_token"]), rp, op, pending)
        status, _, userinfo = self._http().get(op["userinfo_endpoint"], bearer=str(answer["access_token"]))
        if status != 200:
            raise ProviderUnavailable(f"the CIE userinfo endpoint answered {status}")
        citizen = cie.read_userinfo(userinfo.strip(), rp, op, id_claims)
        level = saml.LEVEL_OF[str(id_claims["acr"])]
        login_code = secrets.token_urlsafe(32)
        provider_tokens = {"access_token": str(answer["access_token"]), "sub": str(id_claims["sub"])}
        if answer.get("refresh_token"):
            provider_tokens["refresh_token"] = str(answer["refresh_token"])
        with self.db.transaction() as session:
            session.execute(sa.insert(models.sessions).values(
                id=str(uuid.uuid4()), tenant=tenant_id, subject=citizen.fiscal_code, level=level, method="cie",
                idp_entity_id=rp.provider, name_id=None, name_qualifier=None, session_index=None,
                code_hash=_hash(login_code), code_expires_at=now + CODE_LIFETIME, created_at=now,
                provider_tokens=cie.seal(rp, provider_tokens)))
        log.info("cie_login_completed", tenant=tenant_id, level=level)
        return {"code": login_code, "expires_in": int(CODE_LIFETIME.total_seconds()), "return_url": row["return_url"]}


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


__all__ = ["LoginApplication", "MetadataSource", "roles_for", "saml"]
