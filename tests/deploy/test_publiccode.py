"""publiccode.yml against the rules of the standard (v0.7.0) in ../shared/specs/publiccode/.

There is no official JSON Schema: the rules below are the ones written in schema.core.rst and
schema.it.rst (mandatory keys, enumerations, lengths, maintenance rules, SPDX licence, dates),
with the controlled vocabularies (categories, scope, aliases) read from the spec's own lists.
Each rule is also shown to fire on a broken copy of the file, so the checker itself can fail.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from license_expression import get_spdx_licensing

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT.parent / "shared" / "specs" / "publiccode"

TOP_LEVEL = {
    "publiccodeYmlVersion", "name", "applicationSuite", "url", "landingURL", "isBasedOn", "softwareVersion",
    "releaseDate", "logo", "monochromeLogo", "inputTypes", "outputTypes", "platforms", "categories", "usedBy",
    "fundedBy", "roadmap", "developmentStatus", "softwareType", "supports", "organisation", "intendedAudience",
    "description", "legal", "maintenance", "localisation", "dependsOn", "IT", "it",
}
REQUIRED = ("publiccodeYmlVersion", "name", "url", "platforms", "developmentStatus", "softwareType",
            "description", "legal", "maintenance", "localisation")
DEVELOPMENT_STATUS = {"concept", "development", "beta", "stable", "obsolete"}
SOFTWARE_TYPE = {"standalone/mobile", "standalone/iot", "standalone/desktop", "standalone/web",
                 "standalone/backend", "standalone/other", "addon", "library", "configurationFiles"}
MAINTENANCE_TYPE = {"internal", "contract", "community", "none"}
DESCRIPTION_KEYS = {"localisedName", "genericName", "shortDescription", "longDescription", "documentation",
                    "apiDocumentation", "features", "screenshots", "videos", "awards"}
DEPENDENCY_KEYS = {"name", "versionMin", "versionMax", "version", "optional"}
BCP47 = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{4})?(-([A-Za-z]{2}|[0-9]{3}))?(-([A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
COUNTRY = re.compile(r"^[A-Z]{2}$")  # lower case is deprecated, so refused here
URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")


def _rst_list(name: str) -> set[str]:
    """The `- value` items of one of the spec's controlled vocabularies."""
    text = (SPECS / name).read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^- ([a-z0-9\-]+)\s*$", text, flags=re.M)}


def _aliases() -> dict[str, str]:
    text = (SPECS / "aliases-list.rst").read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"^([a-z0-9]+)\s+(https?://\S+)\s*$", text, flags=re.M)}


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = urlparse(value)
    return parsed.scheme in {"http", "https"} and bool(parsed.netloc)


def _is_uri(value: Any) -> bool:
    """Syntactically an absolute URI (RFC 3986 scheme ':' hier-part), URL or URN alike."""
    if not isinstance(value, str) or ":" not in value or any(c.isspace() for c in value):
        return False
    scheme, rest = value.split(":", 1)
    return bool(URI_SCHEME.match(scheme)) and bool(rest)


def _is_date(value: Any) -> bool:
    if isinstance(value, dt.date):  # an unquoted YAML date: same format, already parsed
        return True
    if not isinstance(value, str) or not DATE.match(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def problems(doc: Any) -> list[str]:
    """Every rule of the standard this document breaks, one readable line each."""
    out: list[str] = []
    if not isinstance(doc, dict):
        return ["the document is not a mapping"]
    for key in REQUIRED:
        if key not in doc:
            out.append(f"{key}: mandatory key missing")
    for key in doc:
        if key not in TOP_LEVEL:
            out.append(f"{key}: not a key of the standard")
    if "IT" in doc or "it" in doc:
        out.append("IT: the Italian section is deprecated in v0.7.0; use supports and organisation")
    if "publiccodeYmlVersion" in doc and not (isinstance(doc["publiccodeYmlVersion"], str)
                                              and re.match(r"^0(\.\d+){0,2}$", doc["publiccodeYmlVersion"])):
        out.append("publiccodeYmlVersion: must be a string version of the 0.x standard, e.g. \"0\"")
    if "name" in doc and not (isinstance(doc["name"], str) and doc["name"].strip()):
        out.append("name: must be a non-empty string")
    for key in ("url", "landingURL", "roadmap"):
        if key in doc and not _is_url(doc[key]):
            out.append(f"{key}: must be an http(s) URL")
    for key in ("releaseDate",):
        if key in doc and not _is_date(doc[key]):
            out.append(f"{key}: must be a date YYYY-MM-DD")
    if "platforms" in doc:
        platforms = doc["platforms"] if isinstance(doc["platforms"], list) else [doc["platforms"]]
        if not platforms or not all(isinstance(p, str) and p for p in platforms):
            out.append("platforms: a string or a non-empty list of strings")
    if doc.get("developmentStatus") not in DEVELOPMENT_STATUS and "developmentStatus" in doc:
        out.append(f"developmentStatus: {doc['developmentStatus']!r} is not one of {sorted(DEVELOPMENT_STATUS)}")
    if doc.get("softwareType") not in SOFTWARE_TYPE and "softwareType" in doc:
        out.append(f"softwareType: {doc['softwareType']!r} is not one of {sorted(SOFTWARE_TYPE)}")
    categories = _rst_list("categories-list.rst")
    for category in doc.get("categories", []) or []:
        if category not in categories:
            out.append(f"categories: {category!r} is not in the categories list")
    out += _supports(doc)
    out += _organisation(doc)
    out += _audience(doc.get("intendedAudience"))
    out += _description(doc.get("description"))
    out += _legal(doc.get("legal"))
    out += _maintenance(doc.get("maintenance"))
    out += _localisation(doc.get("localisation"))
    out += _depends_on(doc.get("dependsOn"))
    return out


def _supports(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "supports" not in doc:
        return out
    aliases = _aliases()
    if not isinstance(doc["supports"], list):
        return ["supports: must be a list of {id: ...}"]
    for item in doc["supports"]:
        if not isinstance(item, dict) or set(item) != {"id"}:
            out.append(f"supports: {item!r} must be an object with the single property id")
            continue
        value = item["id"]
        if isinstance(value, str) and value.startswith("alias:"):
            if value.removeprefix("alias:") not in aliases:
                out.append(f"supports: unknown alias {value!r}")
        elif not _is_uri(value):
            out.append(f"supports: {value!r} is neither an alias nor a URI")
    return out


def _organisation(doc: dict[str, Any]) -> list[str]:
    if "organisation" not in doc:
        return []
    org = doc["organisation"]
    if not isinstance(org, dict):
        return ["organisation: must be a mapping"]
    out = [f"organisation/{k}: not a key of the standard" for k in org if k not in {"uri", "name"}]
    if not _is_uri(org.get("uri")):
        out.append("organisation/uri: mandatory, a URI")
    if "name" in org and not isinstance(org["name"], str):
        out.append("organisation/name: must be a string")
    return out


def _audience(audience: Any) -> list[str]:
    if audience is None:
        return []
    out: list[str] = []
    scopes = _rst_list("scope-list.rst")
    for scope in audience.get("scope", []) or []:
        if scope not in scopes:
            out.append(f"intendedAudience/scope: {scope!r} is not in the scope list")
    for key in ("countries", "unsupportedCountries"):
        for country in audience.get(key, []) or []:
            if not (isinstance(country, str) and COUNTRY.match(country)):
                out.append(f"intendedAudience/{key}: {country!r} is not an upper-case ISO 3166-1 alpha-2 code")
    return out


def _description(description: Any) -> list[str]:
    if not isinstance(description, dict) or not description:
        return ["description: at least one language is mandatory"]
    out: list[str] = []
    with_long = with_features = 0
    for lang, section in description.items():
        where = f"description/{lang}"
        if not (isinstance(lang, str) and BCP47.match(lang)):
            out.append(f"{where}: not a BCP 47 language tag")
        if not isinstance(section, dict):
            out.append(f"{where}: must be a mapping")
            continue
        out += [f"{where}/{k}: not a key of the standard" for k in section if k not in DESCRIPTION_KEYS]
        short = section.get("shortDescription")
        if not isinstance(short, str) or not short.strip():
            out.append(f"{where}/shortDescription: mandatory")
        elif len(short) > 150:
            out.append(f"{where}/shortDescription: {len(short)} characters, at most 150")
        elif "\n" in short.strip():
            out.append(f"{where}/shortDescription: must be a single line")
        if "genericName" in section and len(str(section["genericName"])) > 35:
            out.append(f"{where}/genericName: at most 35 characters")
        if "longDescription" in section:
            long = section["longDescription"]
            if not isinstance(long, str) or not 150 <= len(long) <= 10_000:
                size = len(long) if isinstance(long, str) else "not a string"
                out.append(f"{where}/longDescription: {size} characters, must be 150-10000")
            else:
                with_long += 1
        if "features" in section:
            features = section["features"]
            if not isinstance(features, list) or not all(isinstance(f, str) and f for f in features):
                out.append(f"{where}/features: must be a list of strings")
            else:
                with_features += 1
        for key in ("documentation", "apiDocumentation"):
            if key in section and not _is_url(section[key]):
                out.append(f"{where}/{key}: must be a URL")
        for video in section.get("videos", []) or []:
            if not _is_url(video):
                out.append(f"{where}/videos: {video!r} must be a URL")
        for shot in section.get("screenshots", []) or []:
            if not _is_url(shot) and not (ROOT / str(shot)).is_file():
                out.append(f"{where}/screenshots: {shot!r} is neither a URL nor a file in the repository")
    if not with_long:
        out.append("description: longDescription is mandatory for at least one language")
    if not with_features:
        out.append("description: features are mandatory for at least one language")
    return out


def _legal(legal: Any) -> list[str]:
    if not isinstance(legal, dict):
        return ["legal: mandatory section"]
    out = [f"legal/{k}: not a key of the standard" for k in legal
           if k not in {"license", "mainCopyrightOwner", "repoOwner", "authorsFile"}]
    license_ = legal.get("license")
    if not isinstance(license_, str):
        return [*out, "legal/license: mandatory SPDX expression"]
    info = get_spdx_licensing().validate(license_)
    if info.errors:
        out.append(f"legal/license: not a valid SPDX expression: {'; '.join(info.errors)}")
    elif info.normalized_expression != license_:
        out.append(f"legal/license: spell the SPDX identifiers exactly ({info.normalized_expression})")
    return out


def _maintenance(maintenance: Any) -> list[str]:
    if not isinstance(maintenance, dict):
        return ["maintenance: mandatory section"]
    out = [f"maintenance/{k}: not a key of the standard" for k in maintenance
           if k not in {"type", "contractors", "contacts"}]
    kind = maintenance.get("type")
    if kind not in MAINTENANCE_TYPE:
        return [*out, f"maintenance/type: {kind!r} is not one of {sorted(MAINTENANCE_TYPE)}"]
    contractors = maintenance.get("contractors")
    contacts = maintenance.get("contacts")
    if kind == "contract" and not contractors:
        out.append("maintenance/contractors: mandatory when type is contract")
    if kind != "contract" and contractors is not None:
        out.append("maintenance/contractors: must not be present unless type is contract")
    if kind in {"internal", "community"} and not contacts:
        out.append(f"maintenance/contacts: mandatory when type is {kind}")
    for contact in contacts or []:
        if not isinstance(contact, dict) or not contact.get("name"):
            out.append("maintenance/contacts: every contact needs a name")
            continue
        out += [f"maintenance/contacts/{k}: not a key of the standard" for k in contact
                if k not in {"name", "email", "phone", "affiliation"}]
        if "phone" in contact and not isinstance(contact["phone"], str):
            out.append("maintenance/contacts/phone: must be a string")
    for contractor in contractors or []:
        if not isinstance(contractor, dict) or not contractor.get("name"):
            out.append("maintenance/contractors: every contractor needs a name")
            continue
        if not _is_date(contractor.get("until")):
            out.append("maintenance/contractors/until: mandatory date YYYY-MM-DD")
        if "website" in contractor and not _is_url(contractor["website"]):
            out.append("maintenance/contractors/website: must be a URL")
    return out


def _localisation(localisation: Any) -> list[str]:
    if not isinstance(localisation, dict):
        return ["localisation: mandatory section"]
    out: list[str] = []
    if not isinstance(localisation.get("localisationReady"), bool):
        out.append("localisation/localisationReady: mandatory boolean")
    languages = localisation.get("availableLanguages")
    if not isinstance(languages, list) or not languages:
        out.append("localisation/availableLanguages: mandatory, at least one language")
    else:
        out += [f"localisation/availableLanguages: {lang!r} is not a BCP 47 tag" for lang in languages
                if not (isinstance(lang, str) and BCP47.match(lang))]
    return out


def _depends_on(depends_on: Any) -> list[str]:
    if depends_on is None:
        return []
    out: list[str] = []
    for group, items in depends_on.items():
        if group not in {"open", "proprietary", "hardware"}:
            out.append(f"dependsOn/{group}: not a key of the standard")
            continue
        for item in items or []:
            if not isinstance(item, dict) or not item.get("name"):
                out.append(f"dependsOn/{group}: every dependency needs a name")
                continue
            out += [f"dependsOn/{group}/{k}: not a key of the standard" for k in item if k not in DEPENDENCY_KEYS]
            if "optional" in item and not isinstance(item["optional"], bool):
                out.append(f"dependsOn/{group}/optional: must be a boolean")
            for key in ("version", "versionMin", "versionMax"):
                if key in item and not isinstance(item[key], str):
                    out.append(f"dependsOn/{group}/{key}: must be a string (quote it)")
    return out


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    raw = (ROOT / "publiccode.yml").read_bytes()
    raw.decode("utf-8")  # the standard: MUST be UTF-8
    return yaml.safe_load(raw)


def test_spec_files_are_present() -> None:
    assert (SPECS / "schema.core.rst").is_file(), f"the publiccode standard is expected in {SPECS}"
    assert len(_rst_list("categories-list.rst")) > 100
    assert "local-authorities" in _rst_list("scope-list.rst")
    assert {"spid", "cie", "anpr", "pagopa", "io", "gdpr"} <= set(_aliases())


def test_publiccode_yml_follows_the_standard(document: dict[str, Any]) -> None:
    assert problems(document) == []


def test_publiccode_declares_the_national_platforms_and_the_comune(document: dict[str, Any]) -> None:
    supported = {item["id"] for item in document["supports"]}
    assert {"alias:spid", "alias:cie", "alias:anpr", "alias:pagopa", "alias:io"} <= supported
    assert document["organisation"]["uri"].startswith("urn:x-italian-pa:")
    assert {"it", "en"} <= set(document["description"])
    assert document["legal"]["license"] == "EUPL-1.2"


def test_publiccode_matches_the_package(document: dict[str, Any]) -> None:
    """The declared version and licence are the ones the package itself declares."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{document["softwareVersion"]}"' in pyproject
    assert f'license = "{document["legal"]["license"]}"' in pyproject


def test_official_examples_pass_except_the_deprecated_section() -> None:
    """The checker accepts the standard's own examples, but for the full one's IT: section and image files."""
    minimal = yaml.safe_load((SPECS / "publiccode.minimal.yml").read_text(encoding="utf-8"))
    minimal["description"]["en"]["longDescription"] = minimal["description"]["en"]["longDescription"] * 2
    assert problems(minimal) == []
    full = yaml.safe_load((SPECS / "publiccode.yml").read_text(encoding="utf-8"))
    assert [p for p in problems(full) if not p.startswith("IT") and "screenshots" not in p] == []


BREAKAGES = [
    ("drop publiccodeYmlVersion", lambda d: d.pop("publiccodeYmlVersion"), "publiccodeYmlVersion"),
    ("drop url", lambda d: d.pop("url"), "url: mandatory"),
    ("url not a URL", lambda d: d.update(url="git@example:repo"), "url: must be"),
    ("bad developmentStatus", lambda d: d.update(developmentStatus="alpha"), "developmentStatus"),
    ("bad softwareType", lambda d: d.update(softwareType="standalone/server"), "softwareType"),
    ("unknown top-level key", lambda d: d.update(colour="blue"), "colour: not a key"),
    ("deprecated IT section", lambda d: d.update(IT={"countryExtensionVersion": "1.0"}), "IT:"),
    ("unknown category", lambda d: d["categories"].append("municipal-stuff"), "categories"),
    ("unknown alias", lambda d: d["supports"].append({"id": "alias:anagrafe"}), "unknown alias"),
    ("support not a URI", lambda d: d["supports"].append({"id": "not a uri"}), "neither an alias"),
    ("organisation without uri", lambda d: d["organisation"].pop("uri"), "organisation/uri"),
    ("lower-case country", lambda d: d["intendedAudience"].update(countries=["it"]), "countries"),
    ("unknown scope", lambda d: d["intendedAudience"]["scope"].append("city"), "scope"),
    ("short description too long", lambda d: d["description"]["en"].update(shortDescription="x" * 151),
     "at most 150"),
    ("long description too short", lambda d: d["description"]["it"].update(longDescription="breve"),
     "must be 150-10000"),
    ("long description too long", lambda d: d["description"]["it"].update(longDescription="x" * 10_001),
     "must be 150-10000"),
    ("no features anywhere", lambda d: [s.pop("features") for s in d["description"].values()],
     "features are mandatory"),
    ("bad language tag", lambda d: d["description"].update({"italiano": d["description"]["it"]}), "BCP 47"),
    ("licence not SPDX", lambda d: d["legal"].update(license="EUPL"), "SPDX"),
    ("licence misspelt", lambda d: d["legal"].update(license="eupl-1.2"), "exactly"),
    ("bad maintenance type", lambda d: d["maintenance"].update(type="vendor"), "maintenance/type"),
    ("internal without contacts", lambda d: d["maintenance"].pop("contacts"), "contacts: mandatory"),
    ("contract without contractors", lambda d: d["maintenance"].update(type="contract"), "contractors: mandatory"),
    ("contractors when not contract",
     lambda d: d["maintenance"].update(contractors=[{"name": "X", "until": "2027-01-01"}]), "must not be present"),
    ("contractor date format", lambda d: d["maintenance"].update(
        type="contract", contractors=[{"name": "X", "until": "01/01/2027"}]), "until"),
    ("release date format", lambda d: d.update(releaseDate="2026-13-01"), "releaseDate"),
    ("localisationReady not boolean", lambda d: d["localisation"].update(localisationReady="yes"),
     "localisationReady"),
    ("no available languages", lambda d: d["localisation"].update(availableLanguages=[]), "availableLanguages"),
    ("dependency version a number", lambda d: d["dependsOn"]["open"][0].update(versionMin=3.13), "quote it"),
]


@pytest.mark.parametrize(("change", "expected"), [(b[1], b[2]) for b in BREAKAGES], ids=[b[0] for b in BREAKAGES])
def test_each_rule_catches_its_breakage(document: dict[str, Any], change: Any, expected: str) -> None:
    broken = copy.deepcopy(document)
    change(broken)
    found = problems(broken)
    assert any(expected in p for p in found), found
