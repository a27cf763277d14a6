"""Our SPID SAML documents against the official XSDs (spid-sp-test's copies in shared/specs).

Why besides spid-sp-test: a direct, fast schema check of every message we emit — SP metadata
(Avviso SPID 29 v3 schema, incl. the ContactPerson extensions), AuthnRequests for both bindings
and every level, LogoutRequests — and of what the IdP twin emits, so the twin cannot drift from
the SAML profile either. `http://www.w3.org/2001/xml.xsd` is mapped to the local copy (offline).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import zlib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import xmlschema
from lxml import etree

from sandbox.spid_idp import idp as twin
from services.spid.domain.authn import authn_request, encode, logout_request
from services.spid.domain.metadata import parse_idp_metadata, sp_metadata
from tests.support.spid import service_provider, twin_idp

XSD = Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "spid-cie" / "saml-xsd"
NOW = dt.datetime.now(dt.UTC)


def _local(uri: str) -> str:
    if uri in ("http://www.w3.org/2001/xml.xsd", "http://www.w3.org/2001/03/xml.xsd"):
        return str(XSD / "xml.xsd")
    return uri


@functools.cache
def schema(name: str) -> xmlschema.XMLSchema:
    assert (XSD / name).exists(), f"missing spec file {XSD / name}"
    return xmlschema.XMLSchema(str(XSD / name), uri_mapper=_local)


def assert_valid(schema_name: str, document: bytes | etree._Element) -> None:
    root = etree.fromstring(document) if isinstance(document, bytes) else document
    errors = [str(e.reason) for e in schema(schema_name).iter_errors(root)]
    assert errors == [], errors[:3]


def _idp():  # type: ignore[no-untyped-def]
    return parse_idp_metadata(twin.idp_metadata(twin_idp()))[0]


def test_sp_metadata_is_valid_against_the_avviso_29_schema_and_saml_metadata() -> None:
    metadata = sp_metadata(service_provider())
    assert_valid("saml-schema-metadata-sp-spid-av29.xsd", metadata)
    assert_valid("saml-schema-metadata-2.0.xsd", metadata)


def test_the_schema_check_catches_a_broken_metadata() -> None:
    root = etree.fromstring(sp_metadata(service_provider()))
    for contact in root.findall("{urn:oasis:names:tc:SAML:2.0:metadata}ContactPerson"):
        contact.set("contactType", "nobody")
    with pytest.raises(AssertionError):
        assert_valid("saml-schema-metadata-sp-spid-av29.xsd", root)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_post_authn_request_is_valid_against_the_protocol_schema(level: int) -> None:
    sp = service_provider()
    element, _ = authn_request(sp, _idp(), level=level, binding="post", now=NOW)
    message = encode(element, key_pem=sp.key_pem, cert_pem=sp.cert_pem, binding="post", relay_state="r" * 20)
    xml = base64.b64decode(message.form["SAMLRequest"])
    assert_valid("saml-schema-protocol-2.0.xsd", xml)
    assert etree.fromstring(xml).find("{http://www.w3.org/2000/09/xmldsig#}Signature") is not None


def test_redirect_authn_request_is_valid_against_the_protocol_schema() -> None:
    sp = service_provider()
    element, _ = authn_request(sp, _idp(), level=2, binding="redirect", now=NOW)
    message = encode(element, key_pem=sp.key_pem, cert_pem=sp.cert_pem, binding="redirect", relay_state="r" * 20)
    query = parse_qs(urlsplit(message.url).query)
    assert set(query) == {"SAMLRequest", "RelayState", "SigAlg", "Signature"}
    assert_valid("saml-schema-protocol-2.0.xsd", zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15))


@pytest.mark.parametrize("binding", ["redirect", "post"])
def test_logout_request_is_valid_against_the_protocol_schema(binding: str) -> None:
    sp = service_provider()
    element = logout_request(sp, _idp(), name_id="_abc", name_qualifier="https://idp.twin.example.it",
                             session_index="_s1", binding=binding, now=NOW)  # type: ignore[arg-type]
    message = encode(element, key_pem=sp.key_pem, cert_pem=sp.cert_pem, binding=binding,  # type: ignore[arg-type]
                     relay_state="r" * 20)
    if binding == "post":
        xml = base64.b64decode(message.form["SAMLRequest"])
    else:
        xml = zlib.decompress(base64.b64decode(parse_qs(urlsplit(message.url).query)["SAMLRequest"][0]), -15)
    assert_valid("saml-schema-protocol-2.0.xsd", xml)


def test_the_twin_speaks_the_schema_too() -> None:
    idp = twin_idp()
    assert_valid("saml-schema-metadata-2.0.xsd", twin.idp_metadata(idp))
    read = twin.ReadRequest(request_id="_req", issuer="https://sportello.comune.example.it/spid",
                            issue_instant="", level=2, acs_index="0", acs_url=None, relay_state="x")
    ok = twin.response(idp, read, acs_url="https://sp.example.it/acs", fiscal_code="RSSMRA85T10A562S", now=NOW)
    assert_valid("saml-schema-protocol-2.0.xsd", base64.b64decode(ok))
    cancelled = twin.response(idp, read, acs_url="https://sp.example.it/acs", fiscal_code=None, now=NOW,
                              error_code=22)
    assert_valid("saml-schema-protocol-2.0.xsd", base64.b64decode(cancelled))
