"""Tenants: a Comune is a YAML file plus secrets; anything wrong stops start-up with a clear reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sandbox import secrets as sandbox_secrets
from sportello.errors import ConfigurationError, UnknownTenant
from sportello.tenants import SecretSource, Tenant, TenantRegistry, load_tenants

CREMONA = sandbox_secrets.TENANTS_DIR / "cremona.yaml"
CERT = "CREMONA_SPID_SIGNING_CERTIFICATE"
KEY = "CREMONA_SPID_SIGNING_KEY"


def cremona() -> dict[str, Any]:
    data = yaml.safe_load(CREMONA.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def write_tenant(folder: Path, data: dict[str, Any], name: str = "tenant.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("secrets")
    sandbox_secrets.generate(folder)
    return folder


@pytest.fixture
def source(secrets_dir: Path) -> SecretSource:
    return SecretSource(environ={}, secrets_dir=secrets_dir)


# -- the demo tenant and its generated secrets ---------------------------------------------------


def test_demo_tenant_loads_with_generated_secrets(source: SecretSource, secrets_dir: Path) -> None:
    registry = load_tenants(sandbox_secrets.TENANTS_DIR, source)
    assert registry.ids() == ["cremona"]
    assert len(registry) == 1
    tenant = registry.get("cremona")
    assert isinstance(tenant, Tenant)
    assert [t.id for t in registry] == ["cremona"]
    assert tenant.fiscal_code == "00297960197"
    assert tenant.istat_code == "019036"
    assert tenant.operators["VRDLGU70A01D150D"] == ("operator", "admin")
    assert tenant.pagopa is not None and tenant.appio is not None and tenant.spid is not None
    assert tenant.pdnd is not None
    assert tenant.pagopa.ibans == ("IT58A0503411400000000012345",)
    assert tenant.pagopa.gpd_subscription_key.get_secret_value() == (
        secrets_dir / "CREMONA_GPD_SUBSCRIPTION_KEY").read_text(encoding="utf-8")
    assert tenant.appio.service("tributi").secondary_key is None
    with pytest.raises(ConfigurationError, match="no IO service named 'nope'"):
        tenant.appio.service("nope")
    # the generated signing key and certificate belong together
    key = serialization.load_pem_private_key(tenant.spid.signing_key.get_secret_value().encode(), None)
    cert = x509.load_pem_x509_certificate(tenant.spid.signing_certificate.encode())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    # secrets never show in the model's repr
    assert tenant.pdnd.private_key.get_secret_value() not in repr(tenant)


def test_generate_writes_every_secret_the_tenants_ask_for(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    written = sandbox_secrets.generate(folder)
    asked = sandbox_secrets.secret_names(cremona()) | set(sandbox_secrets.PLATFORM_SECRETS)
    assert "GATEWAY_TOKEN_SIGNING_KEY" in asked
    assert set(written) == asked
    assert {p.name for p in folder.iterdir()} == asked
    assert folder.stat().st_mode & 0o777 == 0o700
    for path in folder.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    assert (folder / "CREMONA_PDND_PRIVATE_KEY").read_text(encoding="utf-8").startswith("-----BEGIN PRIVATE KEY")
    assert len((folder / "CREMONA_GPD_SUBSCRIPTION_KEY").read_text(encoding="utf-8")) == 32


def test_generate_writes_keys_before_their_certificates(tmp_path: Path) -> None:
    written = sandbox_secrets.generate(tmp_path / "secrets")
    assert written.index(KEY) < written.index(CERT)
    certificates = [i for i, name in enumerate(written) if name.endswith("_CERTIFICATE")]
    assert certificates == list(range(len(written) - len(certificates), len(written)))


def test_generate_is_idempotent(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    sandbox_secrets.generate(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert sandbox_secrets.generate(folder) == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_generate_certifies_an_existing_key(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    sandbox_secrets.generate(folder)
    key_pem = (folder / KEY).read_bytes()
    (folder / CERT).unlink()
    assert sandbox_secrets.generate(folder) == [CERT]
    key = serialization.load_pem_private_key(key_pem, None)
    cert = x509.load_pem_x509_certificate((folder / CERT).read_bytes())
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]


# -- secrets -------------------------------------------------------------------------------------


def test_missing_secret_names_it_and_how_to_provide_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty-secrets"
    empty.mkdir()
    with pytest.raises(ConfigurationError) as raised:
        load_tenants(sandbox_secrets.TENANTS_DIR, SecretSource(environ={}, secrets_dir=empty))
    detail = raised.value.detail
    assert "CREMONA_" in detail
    assert "SPORTELLO_SECRET_CREMONA_" in detail
    assert str(empty) in detail


def test_missing_secret_without_secrets_dir_mentions_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        SecretSource(environ={}).get("CREMONA_PDND_PRIVATE_KEY")
    assert raised.value.detail == (
        "secret CREMONA_PDND_PRIVATE_KEY is missing: set SPORTELLO_SECRET_CREMONA_PDND_PRIVATE_KEY "
        "or mount a file named CREMONA_PDND_PRIVATE_KEY and set SPORTELLO_SECRETS_DIR"
    )


def test_empty_secret_counts_as_missing(tmp_path: Path) -> None:
    (tmp_path / "TOKEN").write_text("  \n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match="secret TOKEN is missing"):
        SecretSource(environ={}, secrets_dir=tmp_path).get("TOKEN")
    with pytest.raises(ConfigurationError, match="secret TOKEN is missing"):
        SecretSource(environ={"SPORTELLO_SECRET_TOKEN": ""}).get("TOKEN")


def test_secret_file_is_stripped(tmp_path: Path) -> None:
    (tmp_path / "TOKEN").write_text("from-file\n", encoding="utf-8")
    assert SecretSource(environ={}, secrets_dir=tmp_path).get("TOKEN") == "from-file"


def test_environment_wins_over_file(tmp_path: Path) -> None:
    (tmp_path / "TOKEN").write_text("from-file", encoding="utf-8")
    source = SecretSource(environ={"SPORTELLO_SECRET_TOKEN": "from-env"}, secrets_dir=tmp_path)
    assert source.get("TOKEN") == "from-env"


def test_environment_wins_when_loading_a_tenant(secrets_dir: Path) -> None:
    source = SecretSource(environ={"SPORTELLO_SECRET_CREMONA_GPD_SUBSCRIPTION_KEY": "env-key"},
                          secrets_dir=secrets_dir)
    tenant = load_tenants(sandbox_secrets.TENANTS_DIR, source).get("cremona")
    assert tenant.pagopa is not None
    assert tenant.pagopa.gpd_subscription_key.get_secret_value() == "env-key"


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPORTELLO_SECRET_SOME_TOKEN", "from-process-env")
    assert SecretSource().get("SOME_TOKEN") == "from-process-env"


@pytest.mark.parametrize("name", ["lower_case", "A", "WITH-DASH", "../ETC_PASSWD", "1STARTS_WITH_DIGIT"])
def test_secret_names_must_be_upper_snake_case(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="UPPER_SNAKE_CASE"):
        SecretSource(environ={}, secrets_dir=tmp_path).get(name)


# -- invalid tenant files -----------------------------------------------------------------------


def load_modified(tmp_path: Path, source: SecretSource, change: Any) -> TenantRegistry:
    data = cremona()
    change(data)
    folder = tmp_path / "tenants"
    write_tenant(folder, data)
    return load_tenants(folder, source)


def test_copy_of_demo_tenant_loads(tmp_path: Path, source: SecretSource) -> None:
    assert load_modified(tmp_path, source, lambda d: None).ids() == ["cremona"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["pagopa"].update(ibans=["IT00A0503411400000000012345"]),
         "pagopa.ibans: Value error, invalid IBAN"),
        (lambda d: d["pagopa"].update(ibans=["not an iban"]), "invalid IBAN"),
        (lambda d: d["pagopa"].update(ibans=[]), "pagopa.ibans"),
        (lambda d: d.update(fiscal_code="00297960198"), "fiscal_code: Value error, not a valid 11-digit"),
        (lambda d: d.update(fiscal_code="RSSMRA85T10A562S"), "not a valid 11-digit organisation fiscal code"),
        (lambda d: d.update(operators={"RSSMRA85T10A562X": ["operator"]}), "not a valid personal fiscal code"),
        (lambda d: d.update(operators={"RSSMRA85T10A562S": ["mayor"]}), "roles must be 'operator' or 'admin'"),
        (lambda d: d["pagopa"].update(station_id="12345678901_01"), "station_id must start with pagopa.broker_id"),
        (lambda d: d["pagopa"].update(station_id="00297960197-01"), "pagopa.station_id"),
        (lambda d: d.update(id="Cremona"), "id: String should match pattern"),
        (lambda d: d.update(istat_code="19036"), "istat_code"),
        (lambda d: d.update(unexpected="x"), "unexpected: Extra inputs are not permitted"),
        (lambda d: d["appio"].update(base_url="not a url"), "appio.base_url"),
        (lambda d: d["appio"].update(services=[]), "appio.services"),
        (lambda d: d.pop("name"), "name: Field required"),
    ],
)
def test_invalid_tenant_is_a_configuration_error(tmp_path: Path, source: SecretSource, change: Any,
                                                  expected: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_modified(tmp_path, source, change)
    assert raised.value.detail.startswith("tenant.yaml: ")
    assert expected in raised.value.detail


def test_bad_operator_code_is_not_echoed(tmp_path: Path, source: SecretSource) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_modified(tmp_path, source, lambda d: d.update(operators={"RSSMRA85T10A562X": ["operator"]}))
    assert "RSSMRA85T10A562X" not in str(raised.value)


def test_error_message_never_contains_a_secret_value(tmp_path: Path) -> None:
    secret_value = "SUPER-secret-value-4711"
    source = SecretSource(environ={"SPORTELLO_SECRET_LEAKY": secret_value, "SPORTELLO_SECRET_LEAKY_IBAN": secret_value})
    for field, value in [
        ("gpd_base_url", {"secret": "LEAKY"}),            # a secret where a URL belongs
        ("ibans", [{"secret": "LEAKY_IBAN"}]),            # a secret where an IBAN belongs
        ("segregation_code", {"secret": "LEAKY"}),        # a secret failing a pattern
        ("nodo_password", {"secret": "LEAKY"}),           # a password too long for the Nodo (8-15)
    ]:
        data = cremona()
        data["pagopa"].pop("nodo_password", None)
        data["pagopa"][field] = value
        data.pop("spid"), data.pop("pdnd"), data.pop("appio")
        data["pagopa"]["gpd_subscription_key"] = {"secret": "LEAKY"}
        folder = tmp_path / field
        write_tenant(folder, data)
        with pytest.raises(ConfigurationError) as raised:
            load_tenants(folder, source)
        assert f"pagopa.{field}" in raised.value.detail
        assert secret_value not in str(raised.value), field
        assert secret_value not in repr(raised.value), field
        assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_duplicate_tenant_id(tmp_path: Path, source: SecretSource) -> None:
    folder = tmp_path / "tenants"
    write_tenant(folder, cremona(), "a.yaml")
    write_tenant(folder, cremona(), "b.yaml")
    with pytest.raises(ConfigurationError, match=r"b\.yaml: tenant id 'cremona' defined twice"):
        load_tenants(folder, source)


def test_two_tenants_load_side_by_side(tmp_path: Path, source: SecretSource) -> None:
    folder = tmp_path / "tenants"
    write_tenant(folder, cremona(), "cremona.yaml")
    other = cremona()
    other.update(id="crema", name="Comune di Crema", fiscal_code="00111540191", istat_code="019035",
                 ipa_code="c_d142")
    other.pop("pagopa")
    write_tenant(folder, other, "crema.yaml")
    registry = load_tenants(folder, source)
    assert registry.ids() == ["crema", "cremona"]
    assert registry.get("crema").pagopa is None


def test_invalid_yaml(tmp_path: Path, source: SecretSource) -> None:
    folder = tmp_path / "tenants"
    folder.mkdir()
    (folder / "broken.yaml").write_text("id: cremona\nname: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"broken\.yaml: not valid YAML"):
        load_tenants(folder, source)


@pytest.mark.parametrize("content", ["- a\n- list\n", "just a string\n", ""])
def test_tenant_file_must_be_a_mapping(tmp_path: Path, source: SecretSource, content: str) -> None:
    folder = tmp_path / "tenants"
    folder.mkdir()
    (folder / "odd.yaml").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"odd\.yaml: a tenant file must be a mapping"):
        load_tenants(folder, source)


def test_empty_folder(tmp_path: Path, source: SecretSource) -> None:
    (tmp_path / "README.txt").write_text("not a tenant", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"no tenant files \(\*\.yaml\)"):
        load_tenants(tmp_path, source)


# -- the registry --------------------------------------------------------------------------------


def test_unknown_tenant(source: SecretSource) -> None:
    registry = load_tenants(sandbox_secrets.TENANTS_DIR, source)
    with pytest.raises(UnknownTenant, match="no tenant 'milano'"):
        registry.get("milano")
    with pytest.raises(UnknownTenant):
        registry.get(["not", "hashable"])  # type: ignore[arg-type]
    assert UnknownTenant.code == "tenant.unknown"


def test_registry_is_a_copy() -> None:
    tenants: dict[str, Tenant] = {}
    registry = TenantRegistry(tenants)
    assert len(registry) == 0
    tenants["x"] = None  # type: ignore[assignment]
    assert registry.ids() == []
