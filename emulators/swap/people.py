"""The store's customers: names, addresses and the emails they type, dirty as Swap receives them.

Swap stores what the customer typed in the returns portal. The same person therefore shows up
with ``Ana.Silva@example.com ``, ``ana.silva@example.com`` or nothing at all on different returns,
and names come in every script. The connector must cope with all of it, so the data carry it.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import phonenumbers

_FIRST = (
    "Ana", "João", "Zoë", "Søren", "Chloé", "Łukasz", "Oliver", "Amelia", "Noah", "Isla",
    "Mateo", "Siobhán", "François", "Björn", "Aoife", "Priya", "Mohammed", "Fatima", "Olusegun",
    "Emma", "Liam", "Hannah", "José", "Ingrid", "Dmitri", "Yasmin", "Kwame", "Léa", "Tomás",
    "Grace",
)  # fmt: skip
_LAST = (
    "Silva", "Müller", "O'Brien", "García", "Nguyễn", "Smith", "Jones", "Kowalski", "Þórsson",
    "Patel", "Okafor", "Rossi", "Dubois", "Andersen", "Brown", "Wilson", "Ní Bhriain", "Novák",
    "Fernández", "Schäfer", "Taylor", "Mensah", "Lefèvre", "Åberg", "Walsh",
)  # fmt: skip
# Names in other scripts as their owners write them (given name, family name, full name), with
# the romanised handle they use in email addresses.
_NON_LATIN = (
    ("芳", "王", "王芳", "wang.fang"), ("伟", "李", "李伟", "li.wei"),
    ("花子", "佐藤", "佐藤 花子", "hanako.sato"), ("一郎", "鈴木", "鈴木 一郎", "ichiro.suzuki"),
    ("민준", "김", "김민준", "minjun.kim"), ("서연", "이", "이서연", "seoyeon.lee"),
    ("大文", "陳", "陳大文", "chan.taiman"),
    ("Алексей", "Иванов", "Алексей Иванов", "alexei.ivanov"),
    ("Νίκος", "Παππάς", "Νίκος Παππάς", "nikos.pappas"),
)  # fmt: skip
_EMOJI = ("✨", "🦄", "🌸", "🔥", "💚")
_DOMAINS = (
    "gmail.com", "outlook.com", "yahoo.co.uk", "icloud.com", "hotmail.fr", "example.com",
    "proton.me", "web.de",
)  # fmt: skip

# (country code, country, currency, [(street, city, province, province code, zip)], phone prefix)
_COUNTRIES: tuple[tuple[str, str, str, tuple[tuple[str, str, str, str, str], ...], str], ...] = (
    (
        "GB", "United Kingdom", "GBP",
        (
            ("High Street", "London", "England", "ENG", "SW1A 1AA"),
            ("Deansgate", "Manchester", "England", "ENG", "M3 4LQ"),
            ("Rose Street", "Edinburgh", "Scotland", "SCT", "EH2 2PR"),
        ),
        "+44 7700 9",
    ),
    (
        "US", "United States", "USD",
        (
            ("Main Street", "New York", "New York", "NY", "10001"),
            ("Congress Avenue", "Austin", "Texas", "TX", "78701"),
            ("Hawthorne Blvd", "Portland", "Oregon", "OR", "97214"),
        ),
        "+1 555 01",
    ),
    (
        "DE", "Germany", "EUR",
        (
            ("Hauptstraße", "Berlin", "Berlin", "BE", "10115"),
            ("Leopoldstraße", "München", "Bayern", "BY", "80802"),
        ),
        "+49 151 2",
    ),
    (
        "FR", "France", "EUR",
        (
            ("Rue de Rivoli", "Paris", "Île-de-France", "IDF", "75001"),
            ("Rue de la République", "Lyon", "Auvergne-Rhône-Alpes", "ARA", "69002"),
        ),
        "+33 6 12 3",
    ),
    ("ES", "Spain", "EUR", (("Calle Mayor", "Madrid", "Madrid", "M", "28013"),), "+34 612 3"),
    ("IE", "Ireland", "EUR", (("Grafton Street", "Dublin", "Dublin", "D", "D02 X285"),),
     "+353 85 1"),
    (
        "CA", "Canada", "CAD",
        (
            ("King Street W", "Toronto", "Ontario", "ON", "M5H 1J9"),
            ("Rue Sainte-Catherine", "Montréal", "Québec", "QC", "H3B 1A7"),
        ),
        "+1 514 55",
    ),
    ("AU", "Australia", "AUD", (("George Street", "Sydney", "New South Wales", "NSW", "2000"),),
     "+61 4 12"),
)  # fmt: skip
# Share of customers per country: a UK store that also sells abroad.
_COUNTRY_WEIGHTS = (45, 20, 8, 8, 4, 5, 5, 5)


class EmailVariant(IntEnum):
    """How the email was typed on one return (drawn per return, so one person varies)."""

    CLEAN = 0
    CAPITALISED = 1
    UPPER_DOMAIN = 2
    TRAILING_SPACE = 3
    PADDED = 4
    NULL = 5
    EMPTY = 6
    NO_DOMAIN = 7
    NOT_AVAILABLE = 8
    NO_AT_SIGN = 9
    SHOUTED = 10


EMAIL_VARIANT_WEIGHTS = (68, 8, 3, 5, 3, 3, 3, 3, 2, 1, 1)


@dataclass(frozen=True)
class Customer:
    """A person who returns things; ``email`` is the clean address, before any typing slips."""

    number: int
    first_name: str
    last_name: str
    name: str
    email: str
    currency: str
    address: dict[str, Any]
    other_billing_address: dict[str, Any] | None

    def email_as_typed(self, variant: EmailVariant) -> str | None:
        local, _, domain = self.email.partition("@")
        capitalised = ".".join(part.capitalize() for part in local.split("."))
        typed: dict[EmailVariant, str | None] = {
            EmailVariant.CLEAN: self.email,
            EmailVariant.CAPITALISED: f"{capitalised}@{domain}",
            EmailVariant.UPPER_DOMAIN: f"{local}@{domain.capitalize()}",
            EmailVariant.TRAILING_SPACE: f"{self.email} ",
            EmailVariant.PADDED: f"  {self.email}\t",
            EmailVariant.NULL: None,
            EmailVariant.EMPTY: "",
            EmailVariant.NO_DOMAIN: f"{local}@",
            EmailVariant.NOT_AVAILABLE: "n/a",
            EmailVariant.NO_AT_SIGN: f"{local}{domain}",
            EmailVariant.SHOUTED: self.email.upper(),
        }
        return typed[variant]


def make_customer(number: int, rng: random.Random) -> Customer:
    """Customer ``number``, drawn from ``rng`` (seeded by the caller for determinism)."""
    style = rng.random()
    if style < 0.78:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        handle = f"{_ascii(first)}.{_ascii(last)}"
        name = f"{first} {last}"
    elif style < 0.88:
        first, last, name, handle = rng.choice(_NON_LATIN)
    elif style < 0.93:
        first, last = f"{rng.choice(_FIRST)} {rng.choice(_EMOJI)}", rng.choice(_LAST)
        handle = f"{_ascii(first)}.{_ascii(last)}"
        name = f"{first} {last}"
    else:
        # Typed carelessly: shouting, lower case, stray spaces, or a single name.
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        handle = f"{_ascii(first)}.{_ascii(last)}"
        name = rng.choice(
            (f"{first} {last}".upper(), f"{first} {last}".lower(), f" {first}  {last} ")
        )
        if rng.random() < 0.3:
            name, last = first, ""
    email = f"{handle}{number}@{rng.choice(_DOMAINS)}"
    country = rng.choices(_COUNTRIES, weights=_COUNTRY_WEIGHTS)[0]
    address = _address(rng, country, first, last)
    billing = _address(rng, country, first, last) if rng.random() < 0.1 else None
    return Customer(number, first, last, name, email, country[2], address, billing)


def _ascii(text: str) -> str:
    """The ASCII handle a person derives from their name ("Łukasz" stays "ukasz": good enough)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum()) or "customer"


def _address(
    rng: random.Random,
    country: tuple[str, str, str, tuple[tuple[str, str, str, str, str], ...], str],
    first: str,
    last: str,
) -> dict[str, Any]:
    code, country_name, _, places, phone_prefix = country
    street, city, province, province_code, zip_code = rng.choice(places)
    return {
        "first_name": first,
        "last_name": last,
        "name": f"{first} {last}".strip(),
        "company": None,
        "address1": f"{rng.randint(1, 240)} {street}",
        "address2": rng.choice((None, None, None, "", f"Flat {rng.randint(1, 40)}")),
        "city": city,
        "province": province,
        "province_code": province_code,
        "zip": zip_code,
        "country": country_name,
        "country_code": code,
        "phone": None
        if rng.random() < 0.25
        else _phone(code, phone_prefix, rng.randint(10000, 99999)),
    }


#: One phone in INVALID_PHONE_EVERY is not a valid number (too short for its country), as
#: customers type them: the draws ending in 0, about 10% of the phones.
INVALID_PHONE_EVERY = 10


def _phone(country_code: str, typed_prefix: str, draw: int) -> str:
    """A phone as the customer typed it: valid for its country, except one in ten.

    A valid number is libphonenumber's example mobile number for the country
    (``phonenumbers.example_number_for_type``) with its last five digits drawn, written in the
    international format (spaces); an invalid one is the old short number (prefix and draw).
    """
    if draw % INVALID_PHONE_EVERY == 0:
        return f"{typed_prefix}{draw}"
    example = phonenumbers.example_number_for_type(
        country_code, phonenumbers.PhoneNumberType.MOBILE
    )
    if example is None:  # every country of the data set has one
        return f"{typed_prefix}{draw}"
    national = str(example.national_number)
    number = phonenumbers.parse(f"+{example.country_code}{national[:-5]}{draw:05d}")
    if not phonenumbers.is_valid_number(number):
        number = example
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
