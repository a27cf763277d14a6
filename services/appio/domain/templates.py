"""Markdown templates per kind of message, in Italian (and English for citizens who prefer it).

Why: what a Comune tells its citizens must be correct and consistent — amount, due date and
notice number exactly as pagoPA has them — and must fit IO's limits. Every template renders a
`MessageContent`, so a template that would break the limits fails when rendered, not at IO.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any, Literal

from services.appio.domain.messages import MessageContent, PaymentData, io_timestamp

Language = Literal["it", "en"]
PAYMENT_TTL = 604_800  # a payment notice is worth a week of delivery attempts

CERTIFICATE_TYPES = {
    1: "anagrafico di nascita", 2: "anagrafico di morte", 3: "anagrafico di matrimonio",
    4: "di cancellazione anagrafica", 5: "di cittadinanza", 6: "storico di cittadinanza",
    7: "di esistenza in vita", 8: "di residenza", 9: "storico di residenza", 10: "di residenza AIRE",
    11: "di stato civile", 12: "di stato di famiglia", 13: "di stato di famiglia e di stato civile",
    14: "di residenza in convivenza", 15: "di stato di famiglia AIRE",
    16: "di stato di famiglia con rapporti di parentela", 17: "di stato libero",
    18: "anagrafico di unione civile", 19: "di contratto di convivenza", 20: "storico di residenza alla data",
}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|>~])")


def escape(text: str) -> str:
    """Text from elsewhere (a causale, a Comune's name) shown literally, not as markdown."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def euro(cents: int, language: Language = "it") -> str:
    units, rest = divmod(cents, 100)
    grouped = f"{units:,}"
    if language == "it":
        return f"€ {grouped.replace(',', '.')},{rest:02d}"
    return f"€{grouped}.{rest:02d}"


def _day(value: date, language: Language) -> str:
    return value.strftime("%d/%m/%Y") if language == "it" else value.isoformat()


def _subject(prefix: str, text: str) -> str:
    subject = f"{prefix}{' '.join(text.split())}"
    return subject if len(subject) <= 120 else subject[:119].rstrip() + "…"


def payment_notice(*, comune: str, description: str, amount_cents: int, notice_number: str,
                   payee_fiscal_code: str, due_date: date, language: Language = "it") -> MessageContent:
    """An avviso di pagamento pagoPA, payable from the message itself (payment_data)."""
    payment = PaymentData(amount_cents=amount_cents, notice_number=notice_number, payee_fiscal_code=payee_fiscal_code)
    if language == "en":
        subject = _subject("Payment notice: ", description)
        markdown = (
            f"Dear citizen,\n\n**{escape(comune)}** has issued a pagoPA payment notice for you.\n\n"
            f"- **Reason:** {escape(description)}\n- **Amount:** {euro(amount_cents, 'en')}\n"
            f"- **Due date:** {_day(due_date, 'en')}\n- **Notice number:** {notice_number}\n"
            f"- **Creditor fiscal code:** {payee_fiscal_code}\n\n"
            "You can pay right here in the IO app with the **Pay** button, or at any pagoPA payment "
            "point quoting the notice number."
        )
    else:
        subject = _subject("Avviso di pagamento: ", description)
        markdown = (
            f"Gentile cittadina, gentile cittadino,\n\n**{escape(comune)}** ti ha inviato un avviso di "
            f"pagamento pagoPA.\n\n- **Causale:** {escape(description)}\n"
            f"- **Importo:** {euro(amount_cents)}\n- **Scadenza:** {_day(due_date, 'it')}\n"
            f"- **Codice avviso:** {notice_number}\n- **Codice fiscale dell'ente creditore:** {payee_fiscal_code}\n\n"
            "Puoi pagare direttamente dall'app IO con il pulsante **Paga**, oppure presso qualsiasi punto "
            "abilitato a pagoPA indicando il codice avviso."
        )
    return MessageContent(subject=subject, markdown=markdown, due_date=io_timestamp(due_date),
                          payment_data=payment, time_to_live=PAYMENT_TTL)


def certificate_ready(*, comune: str, certificate_type: int, verification_code: str,
                      language: Language = "it") -> MessageContent:
    """'Your certificate is ready': where to download it and how anyone can verify it."""
    kind = CERTIFICATE_TYPES.get(certificate_type, "anagrafico")
    if language == "en":
        subject = "Your registry certificate is ready"
        markdown = (
            f"Dear citizen,\n\nthe registry certificate ({escape(kind)}) you asked **{escape(comune)}** for "
            "is ready.\n\nYou can download it from the Comune's online services after logging in with "
            f"SPID or CIE.\n\nVerification code: **{escape(verification_code)}** — anyone you give the "
            "certificate to can check it is genuine with this code."
        )
    else:
        subject = "Il tuo certificato anagrafico è pronto"
        markdown = (
            f"Gentile cittadina, gentile cittadino,\n\nil certificato {escape(kind)} che hai richiesto a "
            f"**{escape(comune)}** è pronto.\n\nPuoi scaricarlo dai servizi online del Comune accedendo con "
            f"SPID o CIE.\n\nCodice di verifica: **{escape(verification_code)}** — chi riceve il certificato "
            "può controllarne l'autenticità con questo codice."
        )
    return MessageContent(subject=subject, markdown=markdown, time_to_live=PAYMENT_TTL)


def free_text(*, subject: str, markdown: str, due_date: str | None = None,
              payment_data: PaymentData | None = None) -> MessageContent:
    """Written by the back office: sent as typed, only checked against IO's limits."""
    return MessageContent(subject=subject.strip(), markdown=markdown.strip(), due_date=due_date,
                          payment_data=payment_data)


def render(kind: str, variables: dict[str, Any], language: Language = "it") -> MessageContent:
    """Render a stored message (kind + variables) in the citizen's language."""
    if kind == "payment_notice":
        return payment_notice(comune=variables["comune"], description=variables["description"],
                              amount_cents=int(variables["amount_cents"]), notice_number=variables["notice_number"],
                              payee_fiscal_code=variables["payee_fiscal_code"],
                              due_date=date.fromisoformat(variables["due_date"]), language=language)
    if kind == "certificate_ready":
        return certificate_ready(comune=variables["comune"], certificate_type=int(variables["certificate_type"]),
                                 verification_code=variables["verification_code"], language=language)
    if kind == "free_text":
        payment = variables.get("payment_data")
        return free_text(subject=variables["subject"], markdown=variables["markdown"],
                         due_date=variables.get("due_date"),
                         payment_data=PaymentData.from_dict(payment) if payment else None)
    raise ValueError(f"unknown message kind {kind!r}")


def language_for(preferred_languages: list[str] | tuple[str, ...]) -> Language:
    """English when the citizen's first preference is English, else Italian."""
    return "en" if preferred_languages and preferred_languages[0] == "en_GB" else "it"
