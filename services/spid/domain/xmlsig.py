"""XML parsing and XML-DSig (enveloped, exclusive C14N, RSA-SHA256) with the xmlsec library.

Why: SAML security is the signature. Parsing refuses DTDs and entities (XXE, XSLT tricks);
verification checks that the signature is a direct child of the element it signs, references
that element's own ID (no wrapping), uses only SHA-2 algorithms, and is valid for one of the
certificates registered for the issuer — the KeyInfo inside the message is never trusted.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from lxml import etree

from services.spid.domain.errors import ResponseRejected, SignatureInvalid

NS = {
    "md": "urn:oasis:names:tc:SAML:2.0:metadata",
    "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
    "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "spid": "https://spid.gov.it/saml-extensions",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xs": "http://www.w3.org/2001/XMLSchema",
}
DS = "{" + NS["ds"] + "}"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
ALLOWED_SIGNATURE_METHODS = {
    RSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
}
ALLOWED_DIGESTS = {SHA256, "http://www.w3.org/2001/04/xmldsig-more#sha384", "http://www.w3.org/2001/04/xmlenc#sha512"}
ALLOWED_TRANSFORMS = {ENVELOPED, EXC_C14N, "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"}
MAX_XML_BYTES = 256 * 1024

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False,
                          dtd_validation=False, remove_blank_text=False)


def parse(data: bytes) -> etree._Element:
    """Parse untrusted XML: size-bounded, no DTD, no entities, no processing instructions."""
    if len(data) > MAX_XML_BYTES:
        raise ResponseRejected("XML document too large")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ResponseRejected("XML with a DTD is not accepted")
    try:
        root = etree.fromstring(data, parser=_PARSER)
    except etree.XMLSyntaxError:
        raise ResponseRejected("not well-formed XML") from None
    if root.getroottree().docinfo.doctype:
        raise ResponseRejected("XML with a DTD is not accepted")
    if any(True for _ in root.iter(etree.ProcessingInstruction)):
        raise ResponseRejected("XML processing instructions are not accepted")
    return root


def pem_body(cert_pem: str) -> str:
    """The base64 body of a PEM certificate, as X509Certificate elements carry it."""
    return "".join(line for line in cert_pem.strip().splitlines() if "-----" not in line)


def cert_to_pem(body: str) -> str:
    clean = re.sub(r"\s+", "", body)
    lines = [clean[i:i + 64] for i in range(0, len(clean), 64)]
    pem = "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"
    x509.load_pem_x509_certificate(pem.encode())  # raises ValueError on garbage
    return pem


def sign(element: etree._Element, key_pem: str, cert_pem: str, *, position: int = 1) -> None:
    """Sign `element` (which must carry an ID) in place: enveloped RSA-SHA256 over exclusive C14N."""
    element_id = element.get("ID")
    if not element_id:
        raise ValueError("the element to sign has no ID")
    signature = xmlsec.template.create(element, xmlsec.constants.TransformExclC14N,
                                       xmlsec.constants.TransformRsaSha256, ns="ds")
    element.insert(position, signature)
    ref = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256, uri=f"#{element_id}")
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    x509_data = xmlsec.template.add_x509_data(key_info)
    xmlsec.template.x509_data_add_certificate(x509_data)
    ctx = xmlsec.SignatureContext()
    key = xmlsec.Key.from_memory(key_pem.encode(), xmlsec.constants.KeyDataFormatPem, None)
    key.load_cert_from_memory(cert_pem.encode(), xmlsec.constants.KeyDataFormatPem)
    ctx.key = key
    ctx.register_id(element, "ID")
    ctx.sign(signature)


def signature_of(element: etree._Element) -> etree._Element | None:
    """The element's own enveloped signature (a direct child), or None; more than one is refused."""
    found = element.findall(f"{DS}Signature")
    if len(found) > 1:
        raise SignatureInvalid("more than one signature on one element")
    return found[0] if found else None


def verify(element: etree._Element, certificates: Iterable[str], what: str) -> None:
    """Verify the enveloped signature of `element` against trusted certificates (PEM)."""
    signature = signature_of(element)
    if signature is None:
        raise SignatureInvalid(f"{what} is not signed")
    element_id = element.get("ID")
    refs = signature.findall(f"{DS}SignedInfo/{DS}Reference")
    if not element_id or len(refs) != 1 or refs[0].get("URI") != f"#{element_id}":
        raise SignatureInvalid(f"{what}: the signature does not reference the signed element")
    method = signature.find(f"{DS}SignedInfo/{DS}SignatureMethod")
    if method is None or method.get("Algorithm") not in ALLOWED_SIGNATURE_METHODS:
        raise SignatureInvalid(f"{what}: signature algorithm not allowed (SHA-2 family only)")
    digest = refs[0].find(f"{DS}DigestMethod")
    if digest is None or digest.get("Algorithm") not in ALLOWED_DIGESTS:
        raise SignatureInvalid(f"{what}: digest algorithm not allowed (SHA-2 family only)")
    for transform in refs[0].findall(f"{DS}Transforms/{DS}Transform"):
        if transform.get("Algorithm") not in ALLOWED_TRANSFORMS:
            raise SignatureInvalid(f"{what}: signature transform not allowed")
    for cert in certificates:
        ctx = xmlsec.SignatureContext()
        try:
            ctx.key = xmlsec.Key.from_memory(cert.encode(), xmlsec.constants.KeyDataFormatCertPem, None)
            ctx.register_id(element, "ID")
            ctx.verify(signature)
        except xmlsec.Error:
            continue  # not this certificate; try the IdP's next one (key rollover)
        return
    raise SignatureInvalid(f"{what}: signature not valid for the identity provider's registered keys")


# -- HTTP-Redirect binding signatures (over the query string, SAML bindings 3.4.4.1) -------------
def sign_query(query: str, key_pem: str) -> str:
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("SPID signing keys are RSA")
    return base64.b64encode(key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def verify_query(query: str, signature_b64: str, certificates: Iterable[str]) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return False
    for cert in certificates:
        public = x509.load_pem_x509_certificate(cert.encode()).public_key()
        if not isinstance(public, rsa.RSAPublicKey):
            continue
        try:
            public.verify(signature, query.encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:  # noqa: BLE001, S112 - InvalidSignature: try the next registered certificate
            continue
        return True
    return False
