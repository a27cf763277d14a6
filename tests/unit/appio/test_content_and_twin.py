"""Templates and limits of message content; the twin's rate limit, validation and faults."""

from __future__ import annotations

from datetime import date

import httpx
import pytest

from sandbox.appio import seed
from sandbox.appio.server import Faults, IOTwin, ServiceKey, TwinState
from services.appio.domain import templates
from services.appio.domain.campaigns import parse_csv, recipients
from services.appio.domain.errors import InvalidMessage
from services.appio.domain.messages import MessageContent, PaymentData, io_timestamp, normalise_fiscal_code


def test_payment_notice_in_italian_carries_exact_payment_data() -> None:
    content = templates.payment_notice(comune="Comune di Cremona", description="TARI 2027 *saldo*",
                                       amount_cents=123_456, notice_number="347000000000012345",
                                       payee_fiscal_code="00297960197", due_date=date(2027, 12, 16))
    body = content.to_io("RSSMRA85T10A562S")
    assert body["content"]["payment_data"]["amount"] == 123_456
    assert "€ 1.234,56" in content.markdown and "16/12/2027" in content.markdown
    assert r"TARI 2027 \*saldo\*" in content.markdown  # a causale is text, not markdown
    assert body["content"]["due_date"] == "2027-12-16T00:00:00.000Z" and body["time_to_live"] == 604_800


def test_every_kind_renders_within_io_limits_in_both_languages() -> None:
    long_description = "x" * 140
    for language in ("it", "en"):
        templates.payment_notice(comune="C" * 120, description=long_description, amount_cents=1,
                                 notice_number="0" * 18, payee_fiscal_code="00297960197", due_date=date(2027, 1, 1),
                                 language=language)
        for kind in range(1, 21):
            templates.certificate_ready(comune="Comune di Cremona", certificate_type=kind, verification_code="X1",
                                        language=language)


@pytest.mark.parametrize("bad", [
    dict(subject="short"), dict(markdown="m" * 79), dict(markdown="m" * 10_001), dict(time_to_live=3599),
    dict(time_to_live=604_801), dict(feature_level_type="PREMIUM"), dict(due_date="2027-01-01")])
def test_content_outside_the_contract_is_refused(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"subject": "Oggetto valido", "markdown": "m" * 80, **bad}
    with pytest.raises(InvalidMessage):
        MessageContent(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [dict(amount_cents=0), dict(amount_cents=10_000_000_000), dict(amount_cents=True),
                                 dict(notice_number="447000000000012345"), dict(notice_number="3470"),
                                 dict(payee_fiscal_code="00297960198")])
def test_payment_data_outside_the_contract_is_refused(bad: dict[str, object]) -> None:
    fields: dict[str, object] = {"amount_cents": 100, "notice_number": "347000000000012345",
                                 "payee_fiscal_code": "00297960197", **bad}
    with pytest.raises(InvalidMessage):
        PaymentData(**fields)  # type: ignore[arg-type]


def test_fiscal_codes_and_timestamps() -> None:
    assert normalise_fiscal_code(" rssmra85t10a562s ") == "RSSMRA85T10A562S"
    with pytest.raises(InvalidMessage):
        normalise_fiscal_code("RSSMRA85T10A562X")
    assert io_timestamp(date(2027, 3, 1)) == "2027-03-01T00:00:00.000Z"


def test_campaign_recipients_from_csv_are_checked_and_deduplicated() -> None:
    text = "codice_fiscale;nome\nRSSMRA85T10A562S;Mario\n\nrssmra85t10a562s;Mario\n" + seed.ON_IO[0] + ";x\n"
    assert recipients(parse_csv(text)) == (["RSSMRA85T10A562S", seed.ON_IO[0]], 1)
    with pytest.raises(InvalidMessage, match="position"):
        recipients(["RSSMRA85T10A562S", "nope"])
    with pytest.raises(InvalidMessage, match="NUL"):
        parse_csv("codice_fiscale\nRSSMRA85T10A562S\x00\n")


def twin(**kwargs: object) -> tuple[httpx.Client, TwinState, list[float]]:
    now = [0.0]
    state = TwinState({"k": ServiceKey("01SVC", "00297960197", "t/s#primary")}, clock=lambda: now[0],
                      **kwargs)  # type: ignore[arg-type]
    return httpx.Client(transport=httpx.WSGITransport(app=IOTwin(state, sleep=lambda s: None)),
                        base_url="http://io.test", headers={"Ocp-Apim-Subscription-Key": "k"}), state, now


def test_the_twin_enforces_its_limit_with_retry_after_and_records_the_peak() -> None:
    client, state, now = twin(rate_limit=150, window_seconds=5)
    replies = [client.post("/api/v1/profiles", json={"fiscal_code": seed.ON_IO[0]}) for _ in range(151)]
    assert [r.status_code for r in replies].count(200) == 150
    assert replies[-1].status_code == 429 and int(replies[-1].headers["Retry-After"]) >= 1
    now[0] = 5.1
    assert client.post("/api/v1/profiles", json={"fiscal_code": seed.ON_IO[0]}).status_code == 200
    assert state.stats["t/s#primary"].throttled == 1 and state.stats["t/s#primary"].max_in_window == 151


def test_the_twin_counts_messages_per_citizen_and_shows_status_progression() -> None:
    client, state, now = twin(processing_seconds=1)
    body = {"fiscal_code": seed.ON_IO[0], "content": {"subject": "Oggetto di prova", "markdown": "m" * 80}}
    created = client.post("/api/v1/messages", json=body)
    assert created.status_code == 201 and created.headers["Location"].endswith(created.json()["id"])
    status = f"/api/v1/messages/{seed.ON_IO[0]}/{created.json()['id']}"
    assert client.get(status).json()["status"] == "ACCEPTED"
    now[0] = 2
    assert client.get(status).json()["status"] == "PROCESSED"
    assert client.get(f"/api/v1/messages/{seed.ON_IO[1]}/{created.json()['id']}").status_code == 404
    assert state.submitted == {seed.ON_IO[0]: 1}


def test_twin_faults_are_switchable_and_validated() -> None:
    client, state, _now = twin()
    assert client.post("/__admin/faults", json={"next": ["500", "429"], "retry_after": 3}).status_code == 200
    assert client.post("/api/v1/profiles", json={"fiscal_code": seed.ON_IO[0]}).status_code == 500
    throttled = client.post("/api/v1/profiles", json={"fiscal_code": seed.ON_IO[0]})
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")
    assert client.post("/__admin/faults", json={"next": ["explode"]}).status_code == 400
    state.set_faults(Faults(rates={"malformed": 1.0}, operations=("profile",)))
    assert client.post("/api/v1/profiles", json={"fiscal_code": seed.ON_IO[0]}).status_code == 200
    with pytest.raises(ValueError):
        client.post("/api/v1/profiles", json={"fiscal_code": seed.ON_IO[0]}).json()
