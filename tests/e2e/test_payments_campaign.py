"""Payment campaigns end to end: gateway → pagopa (PostgreSQL, RabbitMQ) → GPD twin, real processes.

An operator uploads a CSV (a few bad rows), sees per-row errors at once, follows the progress,
reads the report, lists the campaign's positions and prints its notices; citizens and other
Comuni are refused; a file that is no campaign is a clear 400.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pypdf
import pytest

from tests.support.platform import Platform, start_platform
from tests.support.processes import wait_for

pytestmark = pytest.mark.e2e
OPERATOR = "RSSMRA85T10A562S"
CODES = ["RSSMRA85T10A562S", "VRDLGU70A01D150D", "BNCGVN80A01D150Y"]
BASE = "/v1/tenants/cremona/payments/campaigns"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("payments_campaign"), services=["pagopa", "spid"],
                        twins=["gpd"]) as running:
        yield running


def csv_text() -> str:
    lines = ["fiscal_code;name;amount;due_date;description;iban"]
    for n in range(1, 11):
        lines.append(f"{CODES[n % 3]};Famiglia {n};{200 + n},25;2099-03-31;TARI 2099 - acconto;")
    lines.append("RSSMRA85T10A562X;Famiglia bad;10;2099-03-31;TARI 2099;")  # row 11: bad fiscal code
    lines.append(f"{CODES[0]};Famiglia late;10;2001-01-01;TARI 2099;")  # row 12: past due date
    return "\n".join(lines) + "\n"


def upload(platform: Platform, body: str | bytes, *, roles: tuple[str, ...] = ("operator",),
           tenant: str = "cremona", content_type: str = "text/csv", key: str | None = None) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key else {}
    return httpx.post(platform.url(BASE), params={"name": "TARI 2099"}, content=body, timeout=60,
                      headers={**platform.auth(OPERATOR, roles, tenant=tenant), "Content-Type": content_type,
                               **extra})


def test_upload_follow_and_report_a_campaign(platform: Platform) -> None:
    response = upload(platform, csv_text())
    assert response.status_code == 201, response.text
    view = response.json()
    cid = view["campaign_id"]
    assert response.headers["Location"] == f"{BASE}/{cid}"
    assert view["total_rows"] == 12 and view["valid_rows"] == 10
    assert [e["row"] for e in view["errors"]] == [11, 12]
    assert "fiscal code" in view["errors"][0]["error"] and "past" in view["errors"][1]["error"]

    headers = platform.auth(OPERATOR, ("operator",))

    def progress() -> dict[str, object]:
        answer = httpx.get(platform.url(f"{BASE}/{cid}"), headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    done = wait_for(lambda: (p := progress())["status"] == "done" and p, timeout=60, what="the campaign to finish")
    assert done["counts"] == {"invalid": 2, "pending": 0, "created": 10, "failed": 0}

    report = httpx.get(platform.url(f"{BASE}/{cid}/report"), headers=headers, timeout=30).json()["items"]
    assert [r["status"] for r in report] == ["created"] * 10 + ["invalid"] * 2
    assert all(len(r["notice_number"]) == 18 for r in report[:10])
    failed = httpx.get(platform.url(f"{BASE}/{cid}/report"), params={"status": "invalid"}, headers=headers,
                       timeout=30).json()["items"]
    assert [r["row"] for r in failed] == [11, 12]

    listed = httpx.get(platform.url("/v1/tenants/cremona/payments/positions"),
                       params={"campaign_id": cid, "limit": 100}, headers=headers, timeout=30).json()["items"]
    assert len(listed) == 10 and {p["status"] for p in listed} == {"published"}
    assert {p["purpose"] for p in listed} == {"campaign"}
    assert {p["notice_number"] for p in listed} == {r["notice_number"] for r in report[:10]}

    twin = httpx.get(f"{platform.twins['gpd']}/__twin/positions/00297960197", timeout=10).json()["positions"]
    assert {p["iupd"] for p in twin} >= {p["iupd"] for p in listed}

    notices = httpx.get(platform.url("/v1/tenants/cremona/payments/notices"), params={"campaign_id": cid},
                        headers=headers, timeout=60)
    assert notices.status_code == 200 and notices.headers["Content-Type"] == "application/pdf"
    assert len(pypdf.PdfReader(io.BytesIO(notices.content)).pages) == 10
    rest = httpx.get(platform.url("/v1/tenants/cremona/payments/notices"),
                     params={"campaign_id": cid, "offset": 6, "limit": 500}, headers=headers, timeout=60)
    assert rest.status_code == 200 and len(pypdf.PdfReader(io.BytesIO(rest.content)).pages) == 4

    events = platform.rows("pagopa", "SELECT body FROM outbox WHERE event_type LIKE :t",
                           t="%payment.position.created%")
    assert sum(1 for (body,) in events if cid in body) == 10


def test_only_the_comunes_back_office_may_upload_or_read(platform: Platform) -> None:
    assert upload(platform, csv_text(), roles=("citizen",)).status_code == 403
    assert upload(platform, csv_text(), tenant="lodi").status_code == 403
    cid = upload(platform, csv_text()).json()["campaign_id"]
    citizen = platform.auth(OPERATOR, ("citizen",))
    assert httpx.get(platform.url(f"{BASE}/{cid}"), headers=citizen, timeout=30).status_code == 403
    assert httpx.get(platform.url(f"{BASE}/{cid}/report"), headers=citizen, timeout=30).status_code == 403
    operator = platform.auth(OPERATOR, ("operator",))
    missing = httpx.get(platform.url(f"{BASE}/00000000-0000-0000-0000-000000000000"), headers=operator, timeout=30)
    assert missing.status_code == 404


@pytest.mark.parametrize(("body", "content_type", "message"), [
    ("", "text/csv", "empty"),
    ("nome;importo\nMario;10\n", "text/csv", "lacks column"),
    ("fiscal_code;name;amount;due_date;description\n", "text/csv", "no rows"),
    (b"\xff\xfe", "text/csv", "UTF-8"),
    ('{"rows": []}', "application/json", "text/csv"),
])
def test_a_file_that_is_no_campaign_is_a_400(platform: Platform, body: str | bytes, content_type: str,
                                            message: str) -> None:
    response = upload(platform, body, content_type=content_type)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert message in response.json()["detail"]


def test_a_retried_upload_with_its_idempotency_key_makes_one_campaign(platform: Platform) -> None:
    key = f"tari-2099-{platform.work.name}"
    first = upload(platform, csv_text(), key=key)
    assert first.status_code == 201 and first.json()["replayed"] is False, first.text
    cid = first.json()["campaign_id"]
    again = upload(platform, csv_text(), key=key)
    assert again.status_code == 200, again.text
    assert again.json()["campaign_id"] == cid and again.json()["replayed"] is True
    assert again.headers["Location"] == f"{BASE}/{cid}"
    assert [e["row"] for e in again.json()["errors"]] == [11, 12]
    other = upload(platform, csv_text().replace("TARI 2099 - acconto", "TARI 2099 - saldo"), key=key)
    assert other.status_code == 409 and other.json()["code"] == "pagopa.idempotency.conflict"
    assert upload(platform, csv_text(), key="bad key").status_code == 400
    done = wait_for(lambda: (p := httpx.get(platform.url(f"{BASE}/{cid}"), timeout=30,
                                            headers=platform.auth(OPERATOR, ("operator",))).json())["status"] == "done"
                    and p, timeout=60, what="the campaign to finish")
    assert done["counts"]["created"] == 10
    campaigns = platform.rows("pagopa", "SELECT count(*) AS n FROM pagopa_campaigns WHERE idempotency_key = :k", k=key)
    assert campaigns[0].n == 1
