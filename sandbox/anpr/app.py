"""The ANPR twin: PDND e-services C001/C003/C030 behind a GovWay-like ModI gateway, and WS 6001.

REST (`POST /anpr/MinInternoPortaANPR-PDND/<e-service>/v1/anpr-service-e002`), checked as ANPR's
GovWay does and answered with its kind of problem+json:
- `Authorization: Bearer` voucher: RS256 signature by PDND (its JWKS), `typ` at+jwt, not expired,
  `aud` = the e-service audience from the catalogue, issued for this e-service → else 401 / 403;
- `Digest` matches the body, `Agid-JWT-Signature` signed with the client's registered `kid`, right
  `aud`, live, `signed_headers` equal to the headers sent → else 400 InteroperabilityInvalidRequest;
- `Agid-JWT-TrackingEvidence` signed, right `aud`, live, with `userID`/`userLocation`/`LoA`, and its
  SHA-256 equal to the voucher's `digest` → else 400;
- a daily quota per consumer and e-service (429 + Retry-After), `idOperazioneClient` rules (C001:
  numeric, increasing; a repeated id returns the earlier answer), a mandatory `motivoRichiesta`.
SOAP (`POST /anpr/ws6001`): `Richiesta6001` decoded with the XSDs, `Risposta6001` encoded with them,
the certificate as a PDF with its QR code.
Test controls (not ANPR's): `POST|DELETE /_faults` (see sandbox/pdnd/faults.py), `GET /_calls` (requests
that reached the e-services, per e-service).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import xmlschema
from jose import jwk, jws, jwt
from jose.exceptions import JOSEError
from werkzeug.wrappers import Request, Response

from sandbox.anpr.population import ISTAT, Population, Resident, population
from sandbox.pdnd.catalogue import ESERVICES, CatalogueEntry
from sandbox.pdnd.faults import Faults
from services.anpr.domain import ws6001 as ws
from sportello.tenants import TenantRegistry

PREFIX = "/anpr/MinInternoPortaANPR-PDND/"
WS6001_PATH = "/anpr/ws6001"
MODI_LEEWAY = 10
CERTIFICATE_NAMES = {
    1: "ANAGRAFICO DI NASCITA", 5: "DI CITTADINANZA", 7: "DI ESISTENZA IN VITA", 8: "DI RESIDENZA",
    11: "DI STATO CIVILE", 12: "DI STATO DI FAMIGLIA", 13: "DI STATO DI FAMIGLIA E DI STATO CIVILE",
    17: "DI STATO LIBERO",
}


class GovWayError(Exception):
    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or {}

    def response(self) -> Response:
        body = {"type": f"https://govway.org/handling-errors/{self.status}/{self.title}.html", "title": self.title,
                "status": self.status, "detail": self.detail, "govway_id": str(uuid.uuid4())}
        return Response(json.dumps(body), status=self.status, mimetype="application/problem+json",
                        headers=self.headers)


def _ko(status: int, code: str, text: str, field_name: str | None = None) -> Response:
    error: dict[str, Any] = {"codiceErroreAnomalia": code, "tipoErroreAnomalia": "E", "testoErroreAnomalia": text}
    if field_name:
        error["campoErroreAnomalia"] = field_name
    body = {"idOperazioneANPR": str(int(time.time() * 1000)), "listaErrori": [error]}
    return Response(json.dumps(body), status=status, mimetype="application/problem+json")


@dataclass
class Consumer:
    client_id: str
    keys: dict[str, str]  # kid -> public PEM


@dataclass
class AnprTwin:
    """WSGI app of the ANPR twin. `jwks` gives PDND's keys (fetched over HTTP when run as a process)."""

    consumers: dict[str, Consumer]
    jwks: Callable[[], dict[str, Any]]
    people: Population = field(default_factory=population)
    clock: Callable[[], float] = time.time
    quotas: dict[str, int] = field(default_factory=lambda: {code: e.daily_quota for code, e in ESERVICES.items()})
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._used: dict[tuple[str, str, str], int] = {}
        self._last_c001: dict[str, int] = {}
        self._c001_answers: dict[tuple[str, str], tuple[int, str]] = {}
        self._seen_jti: dict[str, float] = {}
        self._protocol = 0
        # what arrived (for tests: proves what our client sent); bounded, a sandbox runs for days
        self.calls: deque[dict[str, Any]] = deque(maxlen=1000)
        self.call_counts: Counter[str] = Counter()

    @classmethod
    def from_tenants(cls, tenants: TenantRegistry, **kwargs: Any) -> AnprTwin:
        consumers = {}
        for tenant in tenants:
            if tenant.pdnd is None:
                continue
            public = jwk.construct(tenant.pdnd.private_key.get_secret_value(), "RS256").public_key().to_pem().decode()
            consumers[tenant.pdnd.client_id] = Consumer(tenant.pdnd.client_id, {tenant.pdnd.key_id: public})
        return cls(consumers, **kwargs)

    def _record(self, call: dict[str, Any]) -> None:
        with self._lock:
            self.calls.append(call)
            self.call_counts[call["eservice"]] += 1

    # -- WSGI --------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.dispatch(Request(environ))(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path.rstrip("/") == "/_faults":
            return self.faults.control(request)
        if path.rstrip("/") == "/_calls":  # test control: what arrived, per e-service (proves refusals stayed home)
            with self._lock:
                counts = dict(self.call_counts)
            return Response(json.dumps({"calls": counts}), mimetype="application/json")
        if path.rstrip("/") == WS6001_PATH:
            fault = self.faults.take()
            return Faults.respond(fault) if fault else self.ws6001(request)
        if not path.startswith(PREFIX):
            return GovWayError(404, "UnknownResource", "risorsa non trovata").response()
        segment, _, rest = path[len(PREFIX):].partition("/")
        entry = next((e for e in ESERVICES.values() if e.segment == segment), None)
        if entry is None:
            return GovWayError(404, "UnknownAPI", f"e-service {segment} sconosciuto").response()
        if rest == "v1/status" and request.method == "GET":
            return Response(json.dumps({"idOperazioneANPR": "0", "listaErrori": []}),
                            mimetype="application/problem+json")
        if rest != "v1/anpr-service-e002":
            return GovWayError(404, "UnknownOperation", "operazione non trovata").response()
        if request.method != "POST":
            return GovWayError(405, "MethodNotAllowed", "usare POST").response()
        fault = self.faults.take()
        if fault:
            return Faults.respond(fault)
        try:
            consumer_id = self.check_modi(request, entry)
            self.consume_quota(consumer_id, entry)
        except GovWayError as exc:
            return exc.response()
        return self.e002(request, entry, consumer_id)

    # -- ModI / PDND checks -----------------------------------------------------------------------
    def _verify_voucher(self, token: str, entry: CatalogueEntry) -> dict[str, Any]:
        try:
            header = jws.get_unverified_header(token)
            jws.verify(token, self.jwks(), algorithms=["RS256"])
            claims: dict[str, Any] = jwt.get_unverified_claims(token)
        except JOSEError:
            raise GovWayError(401, "TokenAuthenticationFailed", "token non valido: firma non verificabile") from None
        if header.get("typ") != "at+jwt":
            raise GovWayError(401, "TokenAuthenticationFailed", "token non valido: typ diverso da at+jwt")
        now = self.clock()
        if claims.get("exp", 0) <= now:
            raise GovWayError(401, "TokenAuthenticationFailed", "token scaduto")
        if claims.get("nbf", 0) > now + MODI_LEEWAY:
            raise GovWayError(401, "TokenAuthenticationFailed", "token non ancora valido")
        if claims.get("aud") != entry.audience:
            raise GovWayError(401, "TokenAuthenticationFailed", "token non valido: audience non corrisponde")
        if claims.get("eserviceId") != entry.eservice_id:
            raise GovWayError(403, "AuthorizationDeny", "voucher emesso per un altro e-service")
        return claims

    def _verify_modi_jws(self, token: str, consumer: Consumer, entry: CatalogueEntry, header_name: str
                         ) -> dict[str, Any]:
        try:
            header = jws.get_unverified_header(token)
            claims: dict[str, Any] = jwt.get_unverified_claims(token)
        except JOSEError:
            raise GovWayError(400, "InteroperabilityInvalidRequest", f"header {header_name} non è un JWS") from None
        key = consumer.keys.get(str(header.get("kid")))
        if key is None:
            raise GovWayError(400, "InteroperabilityInvalidRequest", f"{header_name}: kid sconosciuto")
        try:
            jws.verify(token, key, algorithms=["RS256"])
        except JOSEError:
            raise GovWayError(400, "InteroperabilityInvalidRequest", f"{header_name}: firma non valida") from None
        if claims.get("aud") != entry.audience:
            raise GovWayError(400, "InteroperabilityInvalidRequest", f"{header_name}: audience non valida")
        now = self.clock()
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            raise GovWayError(400, "InteroperabilityInvalidRequest", f"{header_name}: token scaduto")
        if not isinstance(claims.get("iat"), int) or claims["iat"] > now + MODI_LEEWAY:
            raise GovWayError(400, "InteroperabilityInvalidRequest", f"{header_name}: iat non valido")
        return claims

    def check_modi(self, request: Request, entry: CatalogueEntry) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            raise GovWayError(401, "TokenAuthenticationRequired", "token non presente")
        voucher = self._verify_voucher(token, entry)
        consumer = self.consumers.get(str(voucher.get("client_id")))
        if consumer is None:
            raise GovWayError(403, "AuthorizationDeny", "fruitore non autorizzato")
        body = request.get_data()
        digest = request.headers.get("Digest")
        signature = request.headers.get("Agid-JWT-Signature")
        if not digest:
            raise GovWayError(400, "InteroperabilityInvalidRequest", "header Digest non presente")
        if not signature:
            raise GovWayError(400, "InteroperabilityInvalidRequest", "header Agid-JWT-Signature non presente")
        expected = "SHA-256=" + base64.b64encode(hashlib.sha256(body).digest()).decode()
        if digest != expected:
            raise GovWayError(400, "InteroperabilityInvalidRequest", "il Digest non corrisponde al payload")
        claims = self._verify_modi_jws(signature, consumer, entry, "Agid-JWT-Signature")
        signed = {k.lower(): v for item in claims.get("signed_headers") or [] for k, v in item.items()}
        if signed.get("digest") != digest:
            raise GovWayError(400, "InteroperabilityInvalidRequest", "signed_headers: digest non corrisponde")
        if signed.get("content-type") != request.headers.get("Content-Type"):
            raise GovWayError(400, "InteroperabilityInvalidRequest", "signed_headers: content-type non corrisponde")
        if claims.get("jti"):
            with self._lock:
                now = self.clock()
                self._seen_jti = {j: e for j, e in self._seen_jti.items() if e > now}
                if claims["jti"] in self._seen_jti:
                    raise GovWayError(400, "InteroperabilityInvalidRequest", "Agid-JWT-Signature: jti già usato")
                self._seen_jti[claims["jti"]] = float(claims["exp"])
        evidence = request.headers.get("Agid-JWT-TrackingEvidence")
        if not evidence:
            raise GovWayError(400, "InteroperabilityInvalidRequest", "header Agid-JWT-TrackingEvidence non presente")
        audit = self._verify_modi_jws(evidence, consumer, entry, "Agid-JWT-TrackingEvidence")
        missing = [c for c in ("userID", "userLocation", "LoA") if not audit.get(c)]
        if missing:
            raise GovWayError(400, "InteroperabilityInvalidRequest",
                              f"Agid-JWT-TrackingEvidence: claim {', '.join(missing)} mancanti")
        bound = voucher.get("digest") or {}
        if bound.get("value") != hashlib.sha256(evidence.encode()).hexdigest():
            raise GovWayError(400, "InteroperabilityInvalidRequest",
                              "il digest del voucher non corrisponde all'Agid-JWT-TrackingEvidence")
        return consumer.client_id

    def consume_quota(self, consumer_id: str, entry: CatalogueEntry) -> None:
        day = datetime.fromtimestamp(self.clock()).date().isoformat()
        key = (consumer_id, entry.code, day)
        with self._lock:
            used = self._used.get(key, 0)
            if used >= self.quotas[entry.code]:
                now = datetime.fromtimestamp(self.clock())
                until_midnight = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
                raise GovWayError(429, "TooManyRequests", "limite giornaliero di richieste raggiunto",
                                  {"Retry-After": str(until_midnight)})
            self._used[key] = used + 1

    # -- E002 --------------------------------------------------------------------------------------
    def e002(self, request: Request, entry: CatalogueEntry, consumer_id: str) -> Response:
        try:
            body = json.loads(request.get_data())
        except ValueError:
            return _ko(400, "EN001", "richiesta non valida: JSON non leggibile")
        self._record({"eservice": entry.code, "body": body, "headers": dict(request.headers)})
        if not isinstance(body, dict):
            return _ko(400, "EN001", "richiesta non valida")
        operation = str(body.get("idOperazioneClient") or "")
        data = body.get("datiRichiesta") or {}
        if not operation:
            return _ko(400, "EN002", "idOperazioneClient obbligatorio", "idOperazioneClient")
        if not str(data.get("motivoRichiesta") or "").strip():
            return _ko(400, "EN003", "motivoRichiesta obbligatorio", "motivoRichiesta")
        if data.get("casoUso") != entry.code:
            return _ko(400, "EN004", "casoUso non coerente con l'e-service", "casoUso")
        try:
            date.fromisoformat(str(data.get("dataRiferimentoRichiesta")))
        except ValueError:
            return _ko(400, "EN005", "dataRiferimentoRichiesta non valida", "dataRiferimentoRichiesta")
        if entry.code == "C001":
            if not operation.isdigit():
                return _ko(400, "EN006", "idOperazioneClient deve essere numerico", "idOperazioneClient")
            with self._lock:
                earlier = self._c001_answers.get((consumer_id, operation))
                if earlier is not None:
                    return Response(earlier[1], status=earlier[0], mimetype="application/json")
                if int(operation) <= self._last_c001.get(consumer_id, 0):
                    return _ko(400, "EN007", "idOperazioneClient inferiore all'ultimo inviato", "idOperazioneClient")
                self._last_c001[consumer_id] = int(operation)
        elif not operation.isalnum():
            return _ko(400, "EN006", "idOperazioneClient deve essere alfanumerico", "idOperazioneClient")
        criteria = body.get("criteriRicerca") or {}
        person = self.people.find(criteria.get("codiceFiscale"), criteria.get("idANPR"))
        if person is None:
            response = _ko(404, "EN122", "nessun soggetto trovato con i criteri indicati")
        else:
            answer = {"idOperazioneANPR": str(int(self.clock() * 1000)),
                      "listaSoggetti": {"datiSoggetto": [self._subject(entry.code, person, body)]}}
            response = Response(json.dumps(answer), mimetype="application/json")
        if entry.code == "C001":
            with self._lock:
                self._c001_answers[(consumer_id, operation)] = (response.status_code, response.get_data(as_text=True))
        return response

    @staticmethod
    def _generalita(person: Resident) -> dict[str, Any]:
        return {"codiceFiscale": {"codFiscale": person.fiscal_code, "validitaCF": "1"},
                "cognome": person.surname, "nome": person.name, "sesso": person.sex,
                "dataNascita": person.birth_date.isoformat(),
                "luogoNascita": {"comune": {"nomeComune": person.birth_place, "codiceIstat": "",
                                            "siglaProvinciaIstat": person.birth_province}},
                "idSchedaSoggettoANPR": person.id_anpr}

    def _subject(self, code: str, person: Resident, body: dict[str, Any]) -> dict[str, Any]:
        if code == "C030":
            return {"identificativi": {"idANPR": person.id_anpr}}
        if code == "C001":
            return {"generalita": self._generalita(person), "identificativi": {"idANPR": person.id_anpr},
                    "residenza": [{"tipoIndirizzo": "1", "dataDecorrenzaResidenza": person.resident_since.isoformat(),
                                   "indirizzo": {"cap": "26100",
                                                 "comune": {"nomeComune": "CREMONA", "codiceIstat": ISTAT,
                                                            "siglaProvinciaIstat": "CR"},
                                                 "toponimo": {"specie": person.street_kind,
                                                              "denominazioneToponimo": person.street},
                                                 "numeroCivico": {"numero": str(person.number)}}}],
                    # the twin tells the subject's certifiability (WS 6001's soggettoCertificabile)
                    "infoSoggettoEnte": [{"id": "1", "chiave": "soggettoCertificabile",
                                          "valoreTesto": str(person.certifiability)}]}
        declared = (body.get("verifica") or {}).get("generalita") or {}
        actual = self._generalita(person)
        info = []
        for index, key in enumerate(("cognome", "nome", "sesso", "dataNascita"), start=1):
            if key not in declared:
                continue
            value = "S" if str(declared[key]).upper() == str(actual[key]).upper() else "N"
            info.append({"id": str(index), "chiave": key, "valore": value})
        return {"infoSoggettoEnte": info}

    # -- WS 6001 -----------------------------------------------------------------------------------
    def _soap_fault(self, text: str) -> Response:
        fault = (f'<?xml version="1.0" encoding="utf-8"?><soapenv:Envelope xmlns:soapenv="{ws.SOAP_ENV}">'
                 f"<soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode><faultstring>{text}"
                 "</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>")
        return Response(fault, status=500, mimetype="text/xml")

    def ws6001(self, request: Request) -> Response:
        if request.method != "POST":
            return self._soap_fault("use POST")
        try:
            element = ws.body_element(request.get_data())
            order: Any = ws.schema().elements["Richiesta6001"].decode(element, validation="strict")
        except (xmlschema.XMLSchemaValidationError, Exception) as exc:  # noqa: BLE001 - any bad input: a fault
            reason = getattr(exc, "reason", None) or type(exc).__name__
            return self._soap_fault(f"Richiesta6001 non valida: {reason}"[:300])
        self._record({"eservice": "6001", "body": order})
        head = order["testataRichiesta"]
        controls = order["datiControllo"]
        subject = order["soggettoIntestatario"]["generalita"]
        person = self.people.find((subject.get("codiceFiscale") or {}).get("codFiscale"))
        errors: list[tuple[str, str]] = []
        if person is None:
            errors.append(("EN122", "soggetto non presente in ANPR"))
        elif person.surname != str(subject.get("cognome", "")).upper() or person.name != str(
                subject.get("nome", "")).upper():
            errors.append(("EN087", "le generalita' indicate non corrispondono al soggetto"))
        elif person.certifiability in (0, 3):
            errors.append(("EN080", "soggetto non certificabile"))
        types = [int(t) for t in order["listaTipiCertificati"]["tipoCertificato"]]
        if any(t not in range(1, 21) for t in types):
            errors.append(("EN010", "tipo certificato non valido"))
        exemption = controls.get("esenzioneBollo")
        if int(controls["bollo"]) == 0 and exemption is None:
            errors.append(("EN031", "bollo assente senza esenzione"))
        if exemption is not None and int(exemption) == 99 and not controls.get("descrizioneEsenzioneBollo"):
            errors.append(("EN032", "esenzione 99 senza descrizione"))
        with self._lock:
            self._protocol += 1
            protocol = self._protocol
        testata = {"idOperazioneComune": head["idOperazioneComune"], "codMittente": "ANPR",
                   "codDestinatario": head["codMittente"], "operazioneRichiesta": "6001",
                   "dataOraRichiesta": head["dataOraRichiesta"],
                   "idOperazioneANPR": str(int(self.clock() * 1000)), "esitoOperazione": "KO" if errors else "OK"}
        if errors:
            answer: dict[str, Any] = {ws.KO: {"testataRisposta": testata, "listaErrori": {"errore": [
                {"codiceErroreAnomalia": c, "tipoErroreAnomalia": "E", "testoErroreAnomalia": t} for c, t in errors]}}}
        else:
            assert person is not None
            pdf = certificate_pdf(person, types[0], protocol, self.people)
            params = {k: controls[k] for k in ("tipoRichiedente", "tipoRichiesta", "paEstera", "emissione", "bollo",
                                               "bolloVirtuale", "esenzioneDiritti", "diritti", "esenzioneBollo",
                                               "descrizioneEsenzioneBollo", "forzaCertificazione")
                      if controls.get(k) is not None}
            answer = {ws.OK: {
                "testataRisposta": testata,
                "listaTipiCertificato": {"tipoCertificato": [str(t) for t in types]},
                "soggettoIntestatario": {"generalita": {"codiceFiscale": {"codFiscale": person.fiscal_code},
                                                        "cognome": person.surname, "nome": person.name}},
                "protocolloANPR": {"numeroProtocolloANPR": str(protocol)},
                "parametriRichiesta": params,
                "file": {"certificatoPdf": base64.b64encode(pdf).decode()},
            }}
        body: Any = ws.schema().elements["Risposta6001"].encode(answer, validation="strict")
        return Response(ws.envelope(body), mimetype="text/xml")


def certificate_pdf(person: Resident, type_id: int, protocol: int, people: Population) -> bytes:
    """The certificate as ANPR would print it: heading, data, QR of the protocol, the Ministry's seal line."""
    import segno
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page = canvas.Canvas(buffer, pagesize=A4, invariant=1)
    page.setTitle(f"Certificato ANPR {protocol}")
    width, height = A4
    y = height - 60
    for text, size in (("MINISTERO DELL'INTERNO - ANAGRAFE NAZIONALE DELLA POPOLAZIONE RESIDENTE", 10),
                       ("COMUNE DI CREMONA", 12),
                       (f"CERTIFICATO {CERTIFICATE_NAMES.get(type_id, f'TIPO {type_id}')}", 14)):
        page.setFont("Helvetica-Bold", size)
        page.drawString(50, y, text)
        y -= 24
    page.setFont("Helvetica", 11)
    lines = [
        "L'UFFICIALE D'ANAGRAFE, visti gli atti d'ufficio, CERTIFICA che",
        f"{person.surname} {person.name}, codice fiscale {person.fiscal_code},",
        f"nato/a a {person.birth_place} ({person.birth_province}) il {person.birth_date.strftime('%d/%m/%Y')},",
        f"risulta residente in CREMONA, {person.address}, dal {person.resident_since.strftime('%d/%m/%Y')}.",
    ]
    if type_id in (12, 13, 16):
        lines.append("La famiglia anagrafica risulta composta da:")
        lines += [f"  - {m.surname} {m.name} nato/a il {m.birth_date.strftime('%d/%m/%Y')}"
                  for m in people.family(person)]
    lines += ["", f"Protocollo ANPR n. {protocol} del {date.today().strftime('%d/%m/%Y')}",
              "Documento firmato con sigillo elettronico qualificato del Ministero dell'Interno (sandbox)."]
    for line in lines:
        y -= 18
        page.drawString(50, y, line)
    qr = io.BytesIO()
    segno.make(f"ANPR-CERT-{protocol}-{person.id_anpr}", error="m").save(qr, kind="png", scale=4)
    qr.seek(0)
    page.drawImage(ImageReader(qr), width - 170, 60, 110, 110)
    page.showPage()
    page.save()
    return buffer.getvalue()
