"""The citizen portal and the back-office console in a real browser, against the whole running platform.

Citizen: SPID login through the IdP twin → request a residence certificate → its €16.00 stamp duty
appears → Pay sends the browser to pagoPA Checkout (the twin) → the PSP pays (the Nodo twin calls our
station, as pagoPA does) → back to the portal, the certificate is issued → download the PDF → verify
it by code, also without login. CIE login through the OP twin. Operator: SPID login → upload a CSV
campaign and watch its progress bar and per-row outcome → see a dead letter and replay it. Every
page: a screenshot in test-artifacts/browser/ and axe-core with no serious or critical violation.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from sportello.bus import EVENTS_EXCHANGE, ConfirmingPublisher
from sportello.contracts.pagopa import PaymentCompleted
from tests.browser.conftest import ARTIFACTS, check_page, new_page
from tests.support.platform import Platform, start_platform
from tests.support.processes import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
MARIO = "RSSMRA85T10A562S"  # a resident (and, in the sandbox tenant, an operator without admin)
OPERATOR = "VRDLGU70A01D150D"  # operator and admin of cremona
GIULIA = "BNCGLI90D45D150M"  # a resident with no role
ORG = "00297960197"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, web_build: Path) -> Iterator[Platform]:
    with start_platform(tmp_path_factory.mktemp("browser")) as running:
        yield running


def assert_accessible(page: Page, name: str) -> None:
    violations = check_page(page, name)
    assert violations == [], f"{name}: {json.dumps(violations, indent=1)}"


def spid_login(page: Page, fiscal_code: str) -> None:
    """From the page's login panel: SPID → the twin's picker → ACS → back with a one-time code."""
    page.get_by_role("button", name=re.compile("Entra con SPID|Log in with SPID")).click()
    idp = page.locator("#spid-idps a").first
    expect(idp).to_be_visible()
    idp.click()
    page.wait_for_selector("select[name=fiscal_code]")
    page.select_option("select[name=fiscal_code]", fiscal_code)
    page.click("button[value=login]")
    expect(page.locator("#who")).to_contain_text(fiscal_code, timeout=30_000)


def refresh_until(page: Page, button: str, *, what: str) -> None:
    """Press the page's Refresh until a button named `button` shows up (the platform works asynchronously)."""
    def shown() -> bool:
        page.click("#refresh-requests")
        page.locator("main:not([aria-busy]) #refresh-requests").wait_for()
        return page.get_by_role("button", name=re.compile(button)).count() > 0

    wait_for(shown, timeout=40, interval=0.5, what=what)


def test_citizen_journey(platform: Platform, browser: Browser) -> None:
    page = new_page(browser)
    portal = platform.url("/portal/")
    page.goto(portal)
    expect(page.locator("h1")).to_have_text("Benvenuto allo sportello online")
    assert page.locator("html").get_attribute("lang") == "it"
    page.keyboard.press("Tab")  # the first Tab stop is the skip link, and it leads to the content
    expect(page.locator(".skip-link")).to_be_focused()
    expect(page.locator(".skip-link")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    assert_accessible(page, "portal-home")

    # the language switch: English, then back to Italian
    page.click("#lang")
    expect(page.locator("h1")).to_have_text("Welcome to the online services")
    assert page.locator("html").get_attribute("lang") == "en"
    assert_accessible(page, "portal-home-en")
    page.click("#lang")
    expect(page.locator("h1")).to_have_text("Benvenuto allo sportello online")

    # 1. SPID login through the IdP twin; the code in the URL is exchanged and removed
    spid_login(page, MARIO)
    assert "code=" not in page.url
    assert_accessible(page, "portal-services")

    # 2. request a residence certificate (type 8) with stamp duty
    page.goto(f"{portal}#/certificates")
    page.select_option("#certificate-type", "8")
    page.select_option("#certificate-exemption", "")
    assert_accessible(page, "portal-certificates")
    page.click("#certificate-form button[type=submit]")
    expect(page.locator(".alert-success")).to_contain_text("Richiesta registrata")
    row = page.locator("tbody tr").first
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "awaiting_payment")

    # 3. the €16.00 stamp-duty position appears (pagopa creates it on GPD): the Pay button
    refresh_until(page, "Paga il bollo", what="the stamp-duty Pay button")
    expect(page.get_by_role("button", name=re.compile("Paga il bollo"))).to_contain_text("16,00")
    page.get_by_role("button", name=re.compile("Paga il bollo")).click()

    # 4. pagoPA Checkout (the twin): the citizen pays; the Nodo twin, as the PSP's side of pagoPA,
    #    calls our station (paVerifyPaymentNotice, paGetPaymentV2, paSendRTV2), then Checkout returns
    page.wait_for_url(f"{platform.twins['checkout']}/c/*")
    expect(page.locator("body")).to_contain_text("16.00 EUR")
    page.screenshot(path=str(ARTIFACTS / "checkout-twin.png"), full_page=True)
    notice = re.search(r"avviso ([0-9]{18})", page.inner_text("body"))
    assert notice, page.inner_text("body")
    page.get_by_role("button", name="Paga (simulato)").click()
    page.wait_for_url(re.compile(r"/portal/#/certificates\?esito=ok"))
    last = httpx.get(f"{platform.twins['nodo']}/__twin/exchanges", timeout=10).json()["exchanges"][-3:]
    assert [(e["operation"], e.get("outcome")) for e in last] == [
        ("paVerifyPaymentNotice", "OK"), ("paGetPaymentV2", "OK"), ("paSendRTV2", "OK")], last
    expect(page.locator(".alert-success")).to_contain_text("ricevuta")

    # 5. the certificate is issued (anpr on payment.completed) → download it
    refresh_until(page, "Scarica il certificato", what="the certificate issued")
    assert_accessible(page, "portal-certificate-issued")
    with page.expect_download() as downloading:
        page.get_by_role("button", name=re.compile("Scarica il certificato")).first.click()
    pdf = ARTIFACTS / "certificate.pdf"
    downloading.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF")
    code = page.locator("tbody tr").first.locator("a.sp-code").inner_text()
    assert re.fullmatch(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", code), code

    # 6. my payments: the stamp duty is paid; its notice downloads
    page.goto(f"{portal}#/payments")
    expect(page.locator("tbody")).to_contain_text("Pagato")
    assert_accessible(page, "portal-payments")
    with page.expect_download() as notice_download:
        page.get_by_role("button", name=re.compile("Scarica avviso")).first.click()
    assert Path(notice_download.value.path()).read_bytes().startswith(b"%PDF")

    # 7. anyone verifies the certificate by its code, without logging in
    stranger = new_page(browser, locale="en-GB")
    stranger.goto(f"{portal}#/verify")
    stranger.fill("#verify-code", code)
    stranger.click("#verify-form button[type=submit]")
    expect(stranger.locator("#verify-result")).to_contain_text("Certificato autentico")
    assert_accessible(stranger, "portal-verify")
    stranger.fill("#verify-code", "AAAA-BBBB-CCCC-DDDD")
    stranger.click("#verify-form button[type=submit]")
    expect(stranger.locator("#verify-result")).to_contain_text("non riconosciuto")
    stranger.context.close()

    # 8. logout ends the session
    page.click("#logout")
    expect(page.locator("h1")).to_have_text("Benvenuto allo sportello online")
    page.context.close()


def test_cie_login(platform: Platform, browser: Browser) -> None:
    page = new_page(browser)
    page.goto(platform.url("/portal/"))
    page.get_by_role("link", name="Entra con CIE").click()
    page.wait_for_selector("select[name=fiscal_code]")
    page.select_option("select[name=fiscal_code]", MARIO)
    page.click("button[value=login]")
    expect(page.locator("#who")).to_contain_text(MARIO, timeout=30_000)
    page.context.close()


def test_citizen_pays_a_position_from_my_payments(platform: Platform, browser: Browser) -> None:
    created = httpx.post(platform.url("/v1/tenants/cremona/payments/positions"), timeout=30,
                         headers=platform.auth(OPERATOR, ("operator",)),
                         json={"description": "Trasporto scolastico aprile", "amount_cents": 3750,
                               "due_date": "2099-04-30",
                               "debtor": {"fiscal_code": GIULIA, "full_name": "Giulia Bianchi"}})
    assert created.status_code == 201, created.text
    notice_number = created.json()["notice_number"]
    page = new_page(browser)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the pages reflow (WCAG 1.4.10)
    page.goto(platform.url("/portal/"))
    spid_login(page, GIULIA)
    page.goto(platform.url("/portal/#/payments"))
    row = page.locator("tbody tr", has_text=notice_number)
    expect(row).to_contain_text("37,50")
    assert_accessible(page, "portal-payments-phone")
    with page.expect_download() as notice:
        row.get_by_role("button", name=re.compile("Scarica avviso")).click()
    assert Path(notice.value.path()).read_bytes().startswith(b"%PDF")
    row.get_by_role("button", name=re.compile("^Paga")).click()
    page.wait_for_url(f"{platform.twins['checkout']}/c/*")
    expect(page.locator("body")).to_contain_text(f"37.50 EUR (avviso {notice_number})")
    page.context.close()


def campaign_csv() -> str:
    codes = [MARIO, OPERATOR, "BNCGVN80A01D150Y"]
    lines = ["codice_fiscale;nominativo;importo;scadenza;causale"]
    lines += [f"{codes[n % 3]};Famiglia {n};{100 + n},50;31/12/2099;TARI 2099 - rata unica" for n in range(1, 13)]
    lines.append("RSSMRA85T10A562X;Famiglia errata;10;31/12/2099;TARI 2099")  # row 13: bad fiscal code
    return "\n".join(lines) + "\n"


def dead_letter_for(platform: Platform) -> str:
    """A payment.completed for cremona that anpr cannot read: dead-lettered at once, with its tenant."""
    event_id = str(uuid.uuid4())
    body = {"specversion": "1.0", "id": event_id, "source": "/tests/browser", "type": PaymentCompleted.event_type,
            "time": "2026-01-01T00:00:00Z", "tenant": "cremona", "correlationid": "browser-test-0001",
            "datacontenttype": "application/json", "data": {"amount_cents": "lots"}}
    publisher = ConfirmingPublisher(platform.amqp_uri)
    try:
        publisher.publish(json.dumps(body), exchange=EVENTS_EXCHANGE, routing_key=PaymentCompleted.event_type,
                          message_id=event_id)
    finally:
        publisher.close()
    return event_id


def test_operator_journey(platform: Platform, browser: Browser, tmp_path: Path) -> None:
    event_id = dead_letter_for(platform)
    page = new_page(browser)
    console = platform.url("/console/")
    page.goto(console)
    expect(page.locator("h1")).to_have_text("Console del back office")
    assert_accessible(page, "console-login")
    spid_login(page, OPERATOR)
    expect(page.get_by_role("link", name="Messaggi non consegnati").first).to_be_visible()  # an admin
    assert_accessible(page, "console-home")

    # 1. a CSV campaign: per-row validation at once, then the progress bar to 100 %, then each row's outcome
    page.goto(f"{console}#/campaigns")
    csv_file = tmp_path / "tari-2099.csv"
    csv_file.write_text(campaign_csv(), encoding="utf-8")
    page.fill("#campaign-name", "TARI 2099")
    page.set_input_files("#campaign-file", str(csv_file))
    assert_accessible(page, "console-campaigns")
    page.click("#campaign-form button[type=submit]")
    expect(page.locator("#campaign-result")).to_contain_text("12 righe valide su 13")
    bar = page.locator("#campaign-progress [role=progressbar]")
    expect(bar).to_be_visible()
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=40_000)
    expect(page.locator("#campaign-report")).to_contain_text("Campagna completata", timeout=20_000)
    outcomes = page.locator("#campaign-report [data-outcome]")
    expect(outcomes).to_have_count(13)
    found = [outcomes.nth(i).get_attribute("data-outcome") for i in range(13)]
    assert found.count("created") == 12 and found.count("invalid") == 1, found
    expect(page.locator("#campaign-report")).to_contain_text("fiscal code")
    assert_accessible(page, "console-campaign-done")

    # 2. the dead letter, listed for this Comune's admin, and replayed
    letters = platform.url("/v1/tenants/cremona/admin/dead-letters")
    admin = platform.auth(OPERATOR, ("operator", "admin"))

    def listed() -> dict[str, Any] | None:
        items = httpx.get(letters, headers=admin, timeout=10).json()["items"]
        return next((x for x in items if x["event_id"] == event_id), None)

    letter = wait_for(listed, timeout=30, interval=0.5, what="the dead letter recorded")
    page.goto(f"{console}#/dead-letters")
    replay = page.locator(f"[data-letter='{letter['service']}:{letter['id']}']")
    expect(replay).to_be_visible()
    expect(page.locator("tbody")).to_contain_text("anpr.on_payment_completed")
    assert_accessible(page, "console-dead-letters")
    replay.click()
    expect(page.locator("#dead-result")).to_contain_text(f"Messaggio {letter['id']} rimesso in coda")
    expect(page.locator(f"[data-letter='{letter['service']}:{letter['id']}']")).to_have_count(0)
    everything = httpx.get(letters, params={"include_replayed": "true"}, headers=admin, timeout=10).json()["items"]
    replayed = next(x for x in everything if x["id"] == letter["id"] and x["service"] == letter["service"])
    assert replayed["replay_count"] == 1 and replayed["replayed_at"]

    # 3. look a resident up, with a stated reason
    page.goto(f"{console}#/lookup")
    page.fill("#lookup-fc", GIULIA)
    page.fill("#lookup-reason", "prot. 42/2026")
    page.click("#lookup-form button[type=submit]")
    expect(page.locator("#lookup-result")).to_contain_text("BIANCHI")
    assert_accessible(page, "console-lookup")

    # 4. issue a certificate at the counter (exempt: issued at once) and download it
    page.goto(f"{console}#/counter")
    page.fill("#counter-fc", GIULIA)
    page.select_option("#counter-type", "8")
    page.select_option("#counter-exemption", "1")
    page.fill("#counter-reason", "sportello 3")
    page.click("#counter-form button[type=submit]")
    expect(page.locator("#counter-result")).to_contain_text("emesso")
    assert_accessible(page, "console-counter")
    with page.expect_download() as certificate:
        page.get_by_role("button", name="Scarica il certificato").click()
    assert Path(certificate.value.path()).read_bytes().startswith(b"%PDF")

    # 5. create a payment position and print its notice
    page.goto(f"{console}#/positions")
    page.fill("#position-description", "Mensa scolastica marzo")
    page.fill("#position-amount", "42,50")
    page.fill("#position-due", "2099-03-31")
    page.fill("#position-fc", GIULIA)
    page.fill("#position-name", "Giulia Bianchi")
    page.click("#position-form button[type=submit]")
    expect(page.locator("#position-result")).to_contain_text("Posizione creata")
    assert_accessible(page, "console-positions")
    with page.expect_download() as notice:
        page.locator("#position-result").get_by_role("button", name=re.compile("Avviso da stampare")).click()
    assert Path(notice.value.path()).read_bytes().startswith(b"%PDF")

    # 6. one App IO message
    page.goto(f"{console}#/messages")
    page.fill("#message-fc", MARIO)
    page.fill("#message-subject", "Raccolta rifiuti ingombranti")
    page.fill("#message-markdown", "Gentile cittadino, la raccolta dei rifiuti ingombranti nel tuo quartiere "
                                   "si terrà **martedì prossimo** dalle 7 alle 12. Grazie per la collaborazione.")
    page.click("#message-form button[type=submit]")
    expect(page.locator("#message-result")).to_contain_text("Messaggio")
    expect(page.locator("#message-result .alert-success")).to_be_visible()
    # and an IO campaign, followed until every recipient has an outcome
    page.fill("#io-campaign-name", "Ingombranti marzo")
    page.fill("#io-campaign-subject", "Raccolta rifiuti ingombranti")
    page.fill("#io-campaign-markdown", "Gentile cittadino, la raccolta dei rifiuti ingombranti nel tuo quartiere "
                                       "si terrà **martedì prossimo** dalle 7 alle 12. Grazie per la collaborazione.")
    page.fill("#io-campaign-codes", f"{MARIO}\n{OPERATOR}\n")
    page.click("#io-campaign-form button[type=submit]")
    expect(page.locator("#io-campaign-result .alert-success")).to_contain_text("2 destinatari", timeout=40_000)
    assert_accessible(page, "console-messages")

    # 7. the audit trail shows the look-up with its reason; the reconciliation report its counts
    page.goto(f"{console}#/audit")
    expect(page.locator("tbody")).to_contain_text("prot. 42/2026")
    assert_accessible(page, "console-audit")
    page.goto(f"{console}#/reconciliation")
    expect(page.locator("[data-count=paid]")).to_be_visible()
    assert_accessible(page, "console-reconciliation")
    expect(page.locator("main")).not_to_contain_text("Errore")
    page.context.close()


def test_the_console_depends_on_the_role(platform: Platform, browser: Browser) -> None:
    citizen = new_page(browser)
    citizen.goto(platform.url("/console/"))
    spid_login(citizen, GIULIA)  # a resident, no role in the tenant file
    expect(citizen.locator("main .alert-warning")).to_contain_text("non è abilitato")
    expect(citizen.locator("[data-needs]:visible")).to_have_count(0)
    citizen.goto(platform.url("/console/#/lookup"))  # the page is not rendered for her
    expect(citizen.locator("#lookup-form")).to_have_count(0)
    citizen.context.close()

    operator = new_page(browser)
    operator.goto(platform.url("/console/"))
    spid_login(operator, MARIO)  # operator, not admin: no dead letters
    expect(operator.get_by_role("link", name="Campagne di pagamento").first).to_be_visible()
    expect(operator.locator("[data-needs=admin]")).to_be_hidden()
    token = operator.evaluate("() => JSON.parse(sessionStorage.getItem('sportello.console.cremona.session'))"
                              ".access_token")
    refused = httpx.get(platform.url("/v1/tenants/cremona/admin/dead-letters"),
                        headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert refused.status_code == 403 and refused.json()["code"] == "access.forbidden"
    operator.context.close()


def test_pages_are_served_safely(platform: Platform) -> None:
    """The gateway serves the built pages with their security headers, and nothing beside them."""
    page = httpx.get(platform.url("/portal/"), timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    asset = re.search(r'src="(/assets/[^"]+\.js)"', page.text)
    assert asset, page.text[:500]
    script = httpx.get(platform.url(asset.group(1)), timeout=10)
    assert script.status_code == 200 and "immutable" in script.headers["cache-control"]
    bare = httpx.get(platform.url("/console"), timeout=10, follow_redirects=False)
    assert bare.status_code in (301, 308) and bare.headers["location"].endswith("/console/")
    for path in ("/portal/missing.js", "/assets/%2e%2e/portal/index.html", "/assets/..%2f..%2fpyproject.toml",
                 "/portal/%2e%2e/%2e%2e/pyproject.toml"):
        refused = httpx.get(platform.url(path), timeout=10)
        assert refused.status_code == 404, path
        assert "sportello" not in refused.text.lower(), path
    assert httpx.get(platform.url("/v1/health"), timeout=10).status_code == 200  # the API is untouched
