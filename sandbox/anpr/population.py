"""A synthetic population the size of Cremona (72,179 residents), generated deterministically.

Why: look-ups and certificates need people who exist, with valid codici fiscali (computed from
name, surname, sex, birth date and place, with the check character), families sharing an address,
and a few who ANPR will not certify. The same seed always gives the same people; the SPID twin's
test citizens are residents too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache

from stdnum.it import codicefiscale

CREMONA_RESIDENTS = 72_179
ISTAT = "019036"
SEED = 19036
MONTHS = "ABCDEHLMPRST"
VOWELS = set("AEIOU")

SURNAMES = ("ROSSI", "FERRARI", "BIANCHI", "ROMANO", "COLOMBO", "RICCI", "MARINO", "GRECO", "BRUNO", "GALLO",
            "CONTI", "DE LUCA", "MANCINI", "COSTA", "GIORDANO", "RIZZO", "LOMBARDI", "MORETTI", "BARBIERI",
            "FONTANA", "SANTORO", "MARIANI", "RINALDI", "CARUSO", "FERRARA", "GALLI", "MARTINI", "LEONE",
            "LONGO", "GENTILE", "MARTINELLI", "VITALE", "LOMBARDO", "SERRA", "COPPOLA", "DE SANTIS", "ZANETTI",
            "BERNARDI", "GUARNERI", "AMATI", "STRADIVARI", "CAPELLI", "VERDI", "TORRESANI", "FERRONI")
MALE = ("MARCO", "LUCA", "GIUSEPPE", "FRANCESCO", "ANTONIO", "ALESSANDRO", "ANDREA", "MATTEO", "LORENZO",
        "DAVIDE", "PAOLO", "STEFANO", "GIOVANNI", "ROBERTO", "MARIO", "LUIGI", "FABIO", "SIMONE", "CARLO")
FEMALE = ("GIULIA", "FRANCESCA", "SARA", "CHIARA", "ANNA", "MARIA", "ELENA", "LAURA", "VALENTINA", "MARTINA",
          "SILVIA", "PAOLA", "ALESSIA", "FEDERICA", "ELISA", "GIORGIA", "ROBERTA", "MONICA", "CRISTINA")
STREETS = (("VIA", "SOLFERINO"), ("CORSO", "GARIBALDI"), ("VIA", "MAZZINI"), ("CORSO", "CAMPI"),
           ("VIA", "PALESTRO"), ("CORSO", "VITTORIO EMANUELE II"), ("VIA", "DANTE"), ("VIA", "GIUSEPPE VERDI"),
           ("VIA", "BERGAMO"), ("VIA", "MANTOVA"), ("VIA", "BRESCIA"), ("VIA", "MILANO"), ("VIA", "GIORDANO"),
           ("VIA", "PLATINA"), ("VIA", "CADORE"), ("VIA", "DEL SALE"), ("PIAZZA", "STRADIVARI"),
           ("VIA", "ALTOBELLO MELONE"), ("VIA", "FILZI"), ("VIA", "RANDACCIO"), ("CORSO", "MATTEOTTI"),
           ("VIA", "BISSOLATI"), ("VIA", "DEL BORGHETTO"), ("VIA", "POSTUMIA"), ("VIA", "NAZARIO SAURO"))
BIRTH_PLACES = (("D150", "CREMONA", "CR"), ("D150", "CREMONA", "CR"), ("D150", "CREMONA", "CR"),
                ("F205", "MILANO", "MI"), ("B157", "BRESCIA", "BS"), ("G535", "PIACENZA", "PC"),
                ("E648", "LODI", "LO"), ("E897", "MANTOVA", "MN"), ("C469", "CASALMAGGIORE", "CR"),
                ("A562", "BAGNOLO CREMASCO", "CR"))


@dataclass(frozen=True)
class Resident:
    fiscal_code: str
    id_anpr: str
    surname: str
    name: str
    sex: str
    birth_date: date
    birth_code: str
    birth_place: str
    birth_province: str
    family_id: int
    street_kind: str
    street: str
    number: int
    resident_since: date
    certifiability: int  # Motivi_di_non_certificabilita: 2 complete, 1 partial, 0/3 none, 4 guardianship

    @property
    def address(self) -> str:
        return f"{self.street_kind} {self.street} {self.number}"


def _consonants(text: str) -> str:
    return "".join(c for c in text if c.isalpha() and c not in VOWELS)


def _vowels(text: str) -> str:
    return "".join(c for c in text if c in VOWELS)


def _surname_part(surname: str) -> str:
    return (_consonants(surname) + _vowels(surname) + "XXX")[:3]


def _name_part(name: str) -> str:
    consonants = _consonants(name)
    if len(consonants) >= 4:
        return consonants[0] + consonants[2] + consonants[3]
    return (consonants + _vowels(name) + "XXX")[:3]


def fiscal_code(surname: str, name: str, sex: str, born: date, place_code: str) -> str:
    day = born.day + (40 if sex == "F" else 0)
    body = (f"{_surname_part(surname)}{_name_part(name)}{born.year % 100:02d}{MONTHS[born.month - 1]}"
            f"{day:02d}{place_code}")
    return body + codicefiscale.calc_check_digit(body)


FIXED = (  # the SPID twin's citizens (sandbox/spid_idp) live in Cremona too
    ("ROSSI", "MARIO", "M", date(1985, 12, 10), ("A562", "BAGNOLO CREMASCO", "CR")),
    ("VERDI", "LUIGI", "M", date(1970, 1, 1), ("D150", "CREMONA", "CR")),
    ("BIANCHI", "GIULIA", "F", date(1990, 4, 5), ("D150", "CREMONA", "CR")),
)


@dataclass(frozen=True)
class Population:
    residents: tuple[Resident, ...]
    by_fiscal_code: dict[str, int]
    by_id_anpr: dict[str, int]

    def find(self, fiscal_code: str | None = None, id_anpr: str | None = None) -> Resident | None:
        index = self.by_fiscal_code.get((fiscal_code or "").upper()) if fiscal_code else (
            self.by_id_anpr.get(id_anpr or ""))
        return None if index is None else self.residents[index]

    def family(self, resident: Resident) -> list[Resident]:
        return [r for r in self.residents[max(0, self.by_fiscal_code[resident.fiscal_code] - 6):
                                          self.by_fiscal_code[resident.fiscal_code] + 7]
                if r.family_id == resident.family_id]

    def __len__(self) -> int:
        return len(self.residents)


@cache
def population(size: int = CREMONA_RESIDENTS, seed: int = SEED) -> Population:
    """Households of one to five people sharing surname and address; deterministic for a seed."""
    rng = random.Random(seed)  # noqa: S311 - synthetic data, deterministic on purpose
    residents: list[Resident] = []
    seen: set[str] = set()
    family_id = 0
    today = date(2026, 1, 1)

    def add(surname: str, name: str, sex: str, born: date, place: tuple[str, str, str], street: tuple[str, str],
            number: int, certifiability: int) -> None:
        code = fiscal_code(surname, name, sex, born, place[0])
        while code in seen:  # a clash (omocodia): move the birth day, as a new person
            born += timedelta(days=1)
            code = fiscal_code(surname, name, sex, born, place[0])
        seen.add(code)
        index = len(residents)
        residents.append(Resident(
            code, f"{(index * 7919 + 104729) % 10**9:09d}", surname, name, sex, born, place[0], place[1], place[2],
            family_id, street[0], street[1], number, max(born, date(1990 + index % 30, 1 + index % 12, 1 + index % 28)),
            certifiability))

    for surname, name, sex, born, place in FIXED:
        add(surname, name, sex, born, place, STREETS[family_id % len(STREETS)], 10 + family_id, 2)
        family_id += 1
    while len(residents) < size:
        surname = rng.choice(SURNAMES)
        street = rng.choice(STREETS)
        number = rng.randint(1, 180)
        members = min(rng.choice((1, 1, 2, 2, 3, 3, 4, 5)), size - len(residents))
        parent_year = rng.randint(1935, 2004)
        for member in range(members):
            sex = rng.choice("MF")
            name = rng.choice(MALE if sex == "M" else FEMALE)
            year = parent_year + (rng.randint(-3, 3) if member < 2 else rng.randint(20, 35))
            born = date(min(year, today.year - 1), rng.randint(1, 12), rng.randint(1, 28))
            roll = rng.random()
            certifiability = 2 if roll > 0.004 else rng.choice((0, 1, 3, 4))
            add(surname, name, sex, born, rng.choice(BIRTH_PLACES), street, number, certifiability)
        family_id += 1
    return Population(tuple(residents), {r.fiscal_code: i for i, r in enumerate(residents)},
                      {r.id_anpr: i for i, r in enumerate(residents)})
