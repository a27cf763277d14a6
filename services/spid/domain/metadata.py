"""SP metadata (what AgID registers for the Comune) and IdP metadata (whom the Comune trusts).

Why: SPID trust is metadata. The SP metadata follows the SPID technical rules and Avviso 29 for
a public-sector SP (signed, HTTPS entity id, AuthnRequestsSigned, transient NameID, default ACS
index 0, AttributeConsumingService index 0, ContactPerson "other" with IPACode and Public).
IdP metadata gives, per IdP entity id, its endpoints and signing certificates: the only keys
a response may be signed with.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from lxml import etree

from services.spid.domain import saml
from services.spid.domain.errors import ResponseRejected, UnknownIdentityProvider
from services.spid.domain.xmlsig import NS, cert_to_pem, parse, pem_body, sign
from sportello.tenants import Tenant

MD = "{" + NS["md"] + "}"
SPID = "{" + NS["spid"] + "}"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


@dataclass(frozen=True)
class ServiceProvider:
    """One tenant as a SPID SP: everything its metadata and requests need."""

    tenant: str
    entity_id: str
    acs_url: str
    slo_url: str
    key_pem: str = field(repr=False)
    cert_pem: str = field(repr=False)
    attributes: tuple[str, ...]
    service_name: str
    organization_name: str
    organization_url: str
    ipa_code: str
    contact_email: str
    contact_phone: str | None
    default_level: int
    clock_skew_seconds: int
    return_urls: tuple[str, ...]


def service_provider(tenant: Tenant) -> ServiceProvider:
    if tenant.spid is None:
        raise UnknownIdentityProvider(f"tenant {tenant.id!r} has no SPID configuration")
    config = tenant.spid
    entity_id = str(config.entity_id).rstrip("/") if str(config.entity_id).endswith("/") and urlsplit(
        str(config.entity_id)).path == "/" else str(config.entity_id)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(entity_id))
    base = f"{origin}/v1/tenants/{tenant.id}/auth/spid"
    acs = str(config.acs_url) if config.acs_url else f"{base}/acs"
    return ServiceProvider(
        tenant=tenant.id, entity_id=entity_id, acs_url=acs,
        slo_url=str(config.slo_url) if config.slo_url else acs.rsplit("/", 1)[0] + "/slo",
        key_pem=config.signing_key.get_secret_value(), cert_pem=config.signing_certificate,
        attributes=config.attributes, service_name=config.service_name or tenant.name,
        organization_name=tenant.name, organization_url=str(config.organization_url or origin + "/"),
        ipa_code=tenant.ipa_code, contact_email=config.contact_email, contact_phone=config.contact_phone,
        default_level=config.default_level, clock_skew_seconds=config.clock_skew_seconds,
        return_urls=tuple(str(u) for u in config.return_urls),
    )


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, tag, {k: v for k, v in attrs.items()})
    if text is not None:
        node.text = text
    return node


def sp_metadata(sp: ServiceProvider) -> bytes:
    """The signed SP metadata document."""
    root = etree.Element(f"{MD}EntityDescriptor", nsmap={"md": NS["md"], "ds": NS["ds"], "spid": NS["spid"]},
                         entityID=sp.entity_id, ID=saml.new_id())
    sso = _sub(root, f"{MD}SPSSODescriptor", protocolSupportEnumeration=saml.PROTOCOL,
               AuthnRequestsSigned="true", WantAssertionsSigned="true")
    for use in ("signing",):
        key = _sub(sso, f"{MD}KeyDescriptor", use=use)
        info = _sub(key, "{" + NS["ds"] + "}KeyInfo")
        data = _sub(info, "{" + NS["ds"] + "}X509Data")
        _sub(data, "{" + NS["ds"] + "}X509Certificate", pem_body(sp.cert_pem))
    _sub(sso, f"{MD}SingleLogoutService", Binding=saml.BINDING_POST, Location=sp.slo_url)
    _sub(sso, f"{MD}SingleLogoutService", Binding=saml.BINDING_REDIRECT, Location=sp.slo_url)
    _sub(sso, f"{MD}NameIDFormat", saml.NAMEID_TRANSIENT)
    _sub(sso, f"{MD}AssertionConsumerService", index="0", isDefault="true", Binding=saml.BINDING_POST,
         Location=sp.acs_url)
    acs = _sub(sso, f"{MD}AttributeConsumingService", index="0")
    _sub(acs, f"{MD}ServiceName", sp.service_name, **{XML_LANG: "it"})
    for name in sp.attributes:
        _sub(acs, f"{MD}RequestedAttribute", Name=name)
    org = _sub(root, f"{MD}Organization")
    _sub(org, f"{MD}OrganizationName", sp.organization_name, **{XML_LANG: "it"})
    _sub(org, f"{MD}OrganizationDisplayName", sp.organization_name, **{XML_LANG: "it"})
    _sub(org, f"{MD}OrganizationURL", sp.organization_url, **{XML_LANG: "it"})
    contact = _sub(root, f"{MD}ContactPerson", contactType="other")
    ext = _sub(contact, f"{MD}Extensions")
    _sub(ext, f"{SPID}IPACode", sp.ipa_code)
    _sub(ext, f"{SPID}Public")
    _sub(contact, f"{MD}EmailAddress", sp.contact_email)
    if sp.contact_phone:
        _sub(contact, f"{MD}TelephoneNumber", sp.contact_phone)
    sign(root, sp.key_pem, sp.cert_pem, position=0)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


@dataclass(frozen=True)
class IdentityProvider:
    entity_id: str
    name: str
    sso: dict[str, str]  # binding -> URL
    slo: dict[str, str]
    certificates: tuple[str, ...]  # PEM


def parse_idp_metadata(data: bytes) -> list[IdentityProvider]:
    """Every IdP in a metadata document (a single EntityDescriptor or an EntitiesDescriptor)."""
    root = parse(data)
    descriptors = [root] if root.tag == f"{MD}EntityDescriptor" else root.findall(f".//{MD}EntityDescriptor")
    found = []
    for entity in descriptors:
        idp = entity.find(f"{MD}IDPSSODescriptor")
        if idp is None or not entity.get("entityID"):
            continue
        certs = []
        for key in idp.findall(f"{MD}KeyDescriptor"):
            if key.get("use") not in (None, "signing"):
                continue
            for cert in key.findall(".//{" + NS["ds"] + "}X509Certificate"):
                try:
                    certs.append(cert_to_pem(cert.text or ""))
                except ValueError:
                    continue
        if not certs:
            continue
        name_node = entity.find(f"{MD}Organization/{MD}OrganizationDisplayName")
        found.append(IdentityProvider(
            entity_id=entity.get("entityID", ""),
            name=(name_node.text or "").strip() if name_node is not None else entity.get("entityID", ""),
            sso={s.get("Binding", ""): s.get("Location", "") for s in idp.findall(f"{MD}SingleSignOnService")},
            slo={s.get("Binding", ""): s.get("Location", "") for s in idp.findall(f"{MD}SingleLogoutService")},
            certificates=tuple(certs),
        ))
    if not found:
        raise ResponseRejected("the metadata holds no identity provider with a signing certificate")
    return found


class IdpRegistry:
    """The IdPs one tenant trusts, by entity id."""

    def __init__(self, idps: Iterable[IdentityProvider]) -> None:
        self._idps = {idp.entity_id: idp for idp in idps}

    def get(self, entity_id: str) -> IdentityProvider:
        try:
            return self._idps[entity_id]
        except KeyError:
            raise UnknownIdentityProvider("this identity provider is not registered for the Comune") from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._idps.values(), key=lambda i: i.name.lower()))

    def __len__(self) -> int:
        return len(self._idps)
