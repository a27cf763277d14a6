"""nameko entrypoints of the `spid` service (thin: they translate and delegate)."""

from __future__ import annotations

from typing import Any

from services.spid.application import LoginApplication
from services.spid.dependencies import GatewayTokens, Logins
from sportello.edge.rpc import rpc
from sportello.edge.service import PlatformService
from sportello.tokens import TokenIssuer


class SpidService(PlatformService):
    """SPID and CIE login, gateway tokens."""

    name = "spid"
    tokens: TokenIssuer = GatewayTokens()  # type: ignore[assignment]
    logins: LoginApplication = Logins()  # type: ignore[assignment]

    @rpc
    def jwks(self) -> dict[str, Any]:
        """The public keys that verify gateway tokens (current and, while rotating, previous)."""
        return self.tokens.jwks()

    @rpc
    def sp_metadata(self, tenant: str) -> str:
        """The tenant's signed SPID SP metadata (what AgID registers)."""
        self.request.bind(tenant=tenant)
        return self.logins.metadata_xml(tenant)

    @rpc
    def identity_providers(self, tenant: str) -> list[dict[str, str]]:
        self.request.bind(tenant=tenant)
        return self.logins.list_idps(tenant)

    @rpc
    def start_login(self, tenant: str, idp: str, level: int | None = None, binding: str = "redirect",
                    return_url: str | None = None) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.logins.start_login(tenant, idp, level=level, binding=binding,  # type: ignore[arg-type]
                                       return_url=return_url)

    @rpc
    def complete_login(self, tenant: str, saml_response: str, relay_state: str | None = None) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.logins.complete_login(tenant, saml_response, relay_state)

    @rpc
    def exchange_code(self, tenant: str, code: str) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.logins.exchange_code(tenant, code)

    @rpc
    def refresh(self, tenant: str, refresh_token: str) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.logins.refresh(tenant, refresh_token)

    @rpc
    def logout(self, tenant: str, subject: str, refresh_token: str) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.logins.logout(tenant, subject, refresh_token)

    @rpc
    def single_logout(self, tenant: str, binding: str, form: dict[str, str] | None = None,
                      query: str | None = None) -> dict[str, Any]:
        """The SingleLogoutService: an IdP-initiated LogoutRequest or the LogoutResponse to ours."""
        self.request.bind(tenant=tenant)
        return self.logins.single_logout(tenant, binding, form=form, query=query)  # type: ignore[arg-type]

    # -- CIE (OpenID Connect Federation) ------------------------------------------------------------
    @rpc
    def cie_entity_configuration(self, tenant: str) -> str:
        """The tenant's signed Entity Configuration (served at <client_id>/.well-known/openid-federation)."""
        self.request.bind(tenant=tenant)
        return self.logins.cie_entity_configuration(tenant)

    @rpc
    def start_cie_login(self, tenant: str, level: int | None = None, return_url: str | None = None) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.logins.start_cie_login(tenant, level=level, return_url=return_url)

    @rpc
    def complete_cie_login(self, tenant: str, state: str, code: str | None = None, error: str | None = None,
                           issuer: str | None = None) -> dict[str, Any]:
        self.request.bind(tenant=tenant)
        return self.logins.complete_cie_login(tenant, state=state, code=code, error=error, issuer=issuer)
