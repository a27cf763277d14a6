"""Masked logging, through the real path: configure_logging, a logger, the JSON line on stdout."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from stdnum.it import codicefiscale

from sportello.logging import configure_logging, get_logger, mask_text

FISCAL_CODE = "RSSMRA85T10A562S"
OMOCODIC = ["RSSMRA85T10A56NH", "RSSMRA85T10ARSNO", "RSSMRAURTMLARSNL"]  # digits replaced from the right
IBAN = "IT58A0503411400000000012345"
IBAN_SPACED = "IT58 A050 3411 4000 0000 0012 345"
EMAIL = "mario.rossi@example.it"
JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJSU1NNUkE4NVQxMEE1NjJTIiwidGVuYW50IjoiY3JlbW9uYSJ9"
       ".c2lnbmF0dXJlLW9mLXRoZS10b2tlbg")
SAML_XML = ('<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="_a1" Version="2.0">'
            '<saml:Assertion><saml:Subject><saml:NameID>RSSMRA85T10A562S</saml:NameID></saml:Subject>'
            '</saml:Assertion></samlp:Response>')
SAML_B64 = base64.b64encode(SAML_XML.encode()).decode()
ASSERTION_XML = '<saml:Assertion ID="_x"><saml:AttributeValue>Mario Rossi</saml:AttributeValue></saml:Assertion>'

# (text to hide, a fragment of it that must not survive either)
PERSONAL = [
    (FISCAL_CODE, FISCAL_CODE),
    (FISCAL_CODE.lower(), FISCAL_CODE.lower()),
    *[(code, code) for code in OMOCODIC],
    (IBAN, "0503411400000000012345"),
    (IBAN_SPACED, "A050 3411 4000"),
    (EMAIL, "mario.rossi"),
    ("Bearer xyz-opaque-token", "xyz-opaque-token"),
    ("bearer abc.def~ghi", "abc.def~ghi"),
    (JWT, "eyJzdWIiOiJSU1NNUkE4NVQxMEE1NjJTIiwidGVuYW50IjoiY3JlbW9uYSJ9"),
    (SAML_B64, SAML_B64[8:60]),
    (SAML_XML, "NameID"),
    (ASSERTION_XML, "Mario Rossi"),
]
NOT_PERSONAL = [
    "00297960197",  # the Comune's fiscal code is public
    "3f2b8a4e-9c1d-4e7f-8a6b-5d4c3b2a1f0e",
    "it.sportello.pagopa.payment.completed.v1",
    "2026-11-21T10:15:30.123456+00:00",
    "2026-11-21T10:15:30Z",
    "302000100000019421",  # a notice number
    "anpr.handle_payment_completed.retry.2",
]


def test_omocodic_samples_are_valid_fiscal_codes() -> None:
    for code in [FISCAL_CODE, *OMOCODIC]:
        assert codicefiscale.is_valid(code), code


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog.contextvars.clear_contextvars()
    try:
        yield
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with restored_logging():
        yield


def configured(level: str = "DEBUG", fmt: str = "json") -> Any:
    """A logger configured the way every service configures it. Called inside the test body, so the
    streams it binds are the ones capsys captures during the call."""
    configure_logging("anpr", level=level, fmt=fmt)
    return get_logger("test")


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def one_line(capsys: pytest.CaptureFixture[str]) -> tuple[dict[str, Any], str]:
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.strip()]
    assert len(rows) == 1, out
    return json.loads(rows[0]), rows[0]


def test_json_line_carries_service_level_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    log = configured()
    log.info("certificate_issued", certificate_id="c-1", attempt=2)
    line, _ = one_line(capsys)
    assert line["event"] == "certificate_issued"
    assert line["service"] == "anpr"
    assert line["level"] == "info"
    assert line["certificate_id"] == "c-1"
    assert line["attempt"] == 2
    assert line["timestamp"].endswith("Z")


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configured(level="WARNING")
    logger.info("hidden")
    logger.warning("shown")
    assert [line["event"] for line in lines(capsys)] == ["shown"]


@pytest.mark.parametrize(("secret", "fragment"), PERSONAL)
def test_masked_in_the_event_message(capsys: pytest.CaptureFixture[str], secret: str,
                                     fragment: str) -> None:
    log = configured()
    log.info(f"login for {secret} accepted")
    line, raw = one_line(capsys)
    assert fragment not in raw
    assert line["event"].startswith("login for [")


@pytest.mark.parametrize(("secret", "fragment"), PERSONAL)
def test_masked_in_a_field(capsys: pytest.CaptureFixture[str], secret: str, fragment: str) -> None:
    log = configured()
    log.info("request_received", detail=f"got {secret} from portal", raw=secret)
    line, raw = one_line(capsys)
    assert fragment not in raw
    assert line["detail"].startswith("got [")
    assert line["raw"].startswith("[")


@pytest.mark.parametrize(("secret", "fragment"), PERSONAL)
def test_masked_when_nested(capsys: pytest.CaptureFixture[str], secret: str, fragment: str) -> None:
    log = configured()
    log.info("nested", payload={"outer": {"list": ["ok", f"x {secret}", ("t", secret)], "set": {secret}}},
             items=[{"note": secret}])
    _, raw = one_line(capsys)
    assert fragment not in raw
    assert '"ok"' in raw


def test_masked_inside_objects_and_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    log = configured()
    class Citizen:
        def __repr__(self) -> str:
            return f"Citizen({FISCAL_CODE}, {EMAIL})"

    try:
        raise ValueError(f"no resident {FISCAL_CODE}")
    except ValueError:
        log.exception("lookup_failed", who=Citizen(), blob=FISCAL_CODE.encode())
    line, raw = one_line(capsys)
    assert FISCAL_CODE not in raw and EMAIL not in raw
    assert "ValueError: no resident [fiscal-code]" in line["exception"]
    assert line["who"] == "Citizen([fiscal-code], [email])"


def test_masked_in_bound_context(capsys: pytest.CaptureFixture[str]) -> None:
    log = configured()
    structlog.contextvars.bind_contextvars(subject=f"cf={FISCAL_CODE}")
    log.bind(user=EMAIL).info("bound")
    line, raw = one_line(capsys)
    assert FISCAL_CODE not in raw and EMAIL not in raw
    assert line["subject"] == "cf=[fiscal-code]"


@pytest.mark.parametrize(
    "key", ["fiscal_code", "codice_fiscale", "iban", "name", "given_name", "family_name", "email", "token",
            "access_token", "password", "authorization", "saml_response", "private_key", "Fiscal_Code", "NAME"],
)
def test_sensitive_keys_are_redacted_whole(capsys: pytest.CaptureFixture[str], key: str) -> None:
    log = configured()
    log.info("sensitive", **{key: "Mario"}, nested={key: {"any": "thing"}}, listed=[{key: 12345}])
    line, raw = one_line(capsys)
    assert line[key] == "[redacted]"
    assert line["nested"] == {key: "[redacted]"}
    assert line["listed"] == [{key: "[redacted]"}]
    assert "Mario" not in raw and "thing" not in raw and "12345" not in raw


def test_none_under_a_sensitive_key_stays_none(capsys: pytest.CaptureFixture[str]) -> None:
    log = configured()
    log.info("absent", token=None)
    line, _ = one_line(capsys)
    assert line["token"] is None


@pytest.mark.parametrize("value", NOT_PERSONAL)
def test_public_identifiers_are_not_masked(capsys: pytest.CaptureFixture[str], value: str) -> None:
    log = configured()
    log.info(f"handled {value}", value=value, nested={"values": [value]})
    line, _ = one_line(capsys)
    assert line["event"] == f"handled {value}"
    assert line["value"] == value
    assert line["nested"] == {"values": [value]}


def test_plain_values_pass_through(capsys: pytest.CaptureFixture[str]) -> None:
    log = configured()
    log.info("counts", count=3, ratio=0.5, ok=True, missing=None, tenant="cremona")
    line, _ = one_line(capsys)
    assert (line["count"], line["ratio"], line["ok"], line["missing"], line["tenant"]) == (3, 0.5, True, None,
                                                                                          "cremona")


def test_stdlib_logging_is_masked_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    logging.getLogger("x").warning("retrying for %s with %s and %s", FISCAL_CODE, IBAN, f"Bearer {JWT}")
    logging.getLogger("x").info("below the library threshold")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "WARNING x retrying for [fiscal-code] with [iban] and Bearer [jwt]\n"
    assert FISCAL_CODE not in captured.err


def test_stdlib_exception_traceback_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configured()
    try:
        raise RuntimeError(f"bad mail {EMAIL}")
    except RuntimeError:
        logging.getLogger("kombu").exception("consumer failed for %s", FISCAL_CODE.lower())
    err = capsys.readouterr().err
    assert "RuntimeError: bad mail [email]" in err
    assert EMAIL not in err and FISCAL_CODE.lower() not in err


def test_console_format_is_masked_too(capsys: pytest.CaptureFixture[str]) -> None:
    configured(fmt="console").info(f"hello {FISCAL_CODE}", iban=IBAN_SPACED)
    out = capsys.readouterr().out
    assert FISCAL_CODE not in out and "A050" not in out
    assert "[fiscal-code]" in out


# -- property: any valid personal fiscal code is masked wherever it sits --------------------------

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_OMOCODIA = "LMNPQRSTUV"  # 0..9
_DIGIT_POSITIONS = (6, 7, 9, 10, 12, 13, 14)


@st.composite
def fiscal_codes(draw: st.DrawFn) -> str:
    surname_name = draw(st.text(alphabet=_LETTERS, min_size=6, max_size=6))
    year = draw(st.integers(0, 99))
    month = draw(st.sampled_from("ABCDEHLMPRST"))
    day = draw(st.integers(1, 28)) + draw(st.sampled_from([0, 40]))  # women: day + 40
    town = draw(st.sampled_from(_LETTERS)) + f"{draw(st.integers(1, 999)):03d}"
    chars = list(f"{surname_name}{year:02d}{month}{day:02d}{town}")
    # omocodia: the national registry replaces digits with letters from the right
    for position in reversed(_DIGIT_POSITIONS[len(_DIGIT_POSITIONS) - draw(st.integers(0, 7)):]):
        chars[position] = _OMOCODIA[int(chars[position])]
    body = "".join(chars)
    code = body + codicefiscale.calc_check_digit(body)
    assert codicefiscale.is_valid(code), code
    return code.lower() if draw(st.booleans()) else code


_SEPARATORS = st.sampled_from([" ", "\n", "\t", ":", "=", ",", ";", ".", "(", ")", "[", "]", "'", '"', "/", "|",
                               "<", ">", "_", "-", "é", "\u00a0"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(code=FISCAL_CODE, before="scrivere a ufficio@comune.it", after="", left=".", right=" ")
@example(code=FISCAL_CODE.lower(), before="Authorization: Bearer", after="", left=" ", right="")
@example(code=FISCAL_CODE, before="IBAN IT58", after="", left=" ", right=" ")
@given(code=fiscal_codes(), before=st.text(max_size=40), after=st.text(max_size=40),
       left=_SEPARATORS, right=_SEPARATORS)
def test_any_valid_fiscal_code_in_any_text_is_masked(code: str, before: str, after: str, left: str,
                                                      right: str) -> None:
    text = f"{before}{left}{code}{right}{after}"
    stdout = io.StringIO()
    with restored_logging(), contextlib.redirect_stdout(stdout):
        configure_logging("anpr")
        get_logger("property").info(text, field=text, nested={"list": [text]})
    line = json.loads(stdout.getvalue())
    for value in (line["event"], line["field"], line["nested"]["list"][0]):
        assert code not in value
        assert code[6:] not in value, "no tail of the code (birth date, town) survives either"


@pytest.mark.parametrize("text", ["ufficio@comune.it.RSSMRA85T10A562S", "a@b.RSSMRA85T10A562S"])
def test_an_email_right_before_a_fiscal_code_does_not_cut_it_in_half(text: str) -> None:
    masked = mask_text(text)
    assert "85T10A562S" not in masked
    assert "RSSMRA" not in masked


@given(code=fiscal_codes())
def test_mask_text_replaces_a_bare_code(code: str) -> None:
    assert mask_text(code) == "[fiscal-code]"
