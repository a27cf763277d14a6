"""SPID test material: throw-away RSA keys with self-signed certificates, SP and twin IdP values."""

from __future__ import annotations

import datetime as dt
import functools

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from sandbox.spid_idp.idp import Idp
from services.spid.domain.metadata import ServiceProvider

SP_ENTITY = "https://sportello.comune.example.it/spid"
ACS = "https://sportello.comune.example.it/v1/tenants/cremona/auth/spid/acs"
IDP_ENTITY = "https://idp.twin.example.it"


@functools.lru_cache(maxsize=32)
def key_and_cert(name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "IT"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode(),
            cert.public_bytes(serialization.Encoding.PEM).decode())


def service_provider(tenant: str = "cremona", entity_id: str = SP_ENTITY, acs: str = ACS) -> ServiceProvider:
    key, cert = key_and_cert("sp-" + tenant)
    return ServiceProvider(
        tenant=tenant, entity_id=entity_id, acs_url=acs, slo_url=acs.rsplit("/", 1)[0] + "/slo", key_pem=key,
        cert_pem=cert, attributes=("fiscalNumber", "name", "familyName", "email"), service_name="Sportello",
        organization_name="Comune di Cremona", organization_url="https://www.comune.cremona.it/",
        ipa_code="c_d150", contact_email="protocollo@comune.cremona.it", contact_phone="+390372407111",
        default_level=2, clock_skew_seconds=60, return_urls=())


def twin_idp(name: str = "idp") -> Idp:
    key, cert = key_and_cert(name)
    return Idp(entity_id=IDP_ENTITY, base_url="https://idp.twin.example.it", key_pem=key, cert_pem=cert)
