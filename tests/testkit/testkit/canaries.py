"""Canaries and the leak search (redaction tests): secrets of every kind made up per run, every
encoding a secret can take on its way out, and where in events a canary was found."""

from __future__ import annotations

import base64
import json
import random
import string
from typing import Mapping

MASK = "[REDACTED]"  # the `mask` action's marker


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total


def luhn_valid(digits: str) -> bool:
    return _luhn_sum(digits) % 10 == 0


def card_number(rng: random.Random, valid: bool = True, first: str = "4") -> str:
    body = first + "".join(rng.choice(string.digits) for _ in range(14))
    check = (10 - _luhn_sum(body + "0") % 10) % 10
    if not valid:
        check = (check + 1 + rng.randrange(9)) % 10
    number = body + str(check)
    assert luhn_valid(number) == valid
    return number


def de_iban(rng: random.Random) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(18))  # BLZ (8) + account (10)
    numeric = int(bban + "1314" + "00")  # D=13, E=14, check digits 00
    iban = f"DE{98 - numeric % 97:02d}{bban}"
    moved = iban[4:] + iban[:4]
    assert int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    return iban


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pct_all(s: str) -> str:
    """Every byte percent-encoded, even unreserved ones (`4` -> `%34`)."""
    return "".join(f"%{b:02X}" for b in s.encode())


def encodings(value: str) -> dict[str, str]:
    from urllib.parse import quote, quote_plus

    raw = value.encode()
    forms = {
        "raw": value,
        "quote": quote(value, safe=""),
        "quote_path": quote(value),
        "quote_plus": quote_plus(value),
        "pct_all": pct_all(value),
        "pct_all_lower": pct_all(value).lower(),
        "b64": base64.b64encode(raw).decode(),
        "b64_nopad": base64.b64encode(raw).decode().rstrip("="),
        "b64url": base64.urlsafe_b64encode(raw).decode(),
        "b64url_nopad": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "json": json.dumps(value)[1:-1],
    }
    return forms


def leaks(text: str, canaries: Mapping[str, str]) -> list[str]:
    found = []
    for name, value in canaries.items():
        for enc, form in encodings(value).items():
            if form and form in text:
                found.append(f"{name} ({enc}: {form!r})")
    return found


def leak_sites(records, canaries: Mapping[str, str]) -> list[str]:
    """Where, in parsed events, canaries are: `request id / attribute: canary (encoding)`."""
    out = []
    for r in records:
        rid = r.attr("meshaudit.request.id")
        fields = {"<log body>": r.body, **r.attributes}
        for key, value in fields.items():
            for item in value if isinstance(value, list) else [value]:
                for hit in leaks(str(item), canaries):
                    out.append(f"{rid} / {key}: {hit}")
    return out


def rules_of(rec) -> dict[str, int]:
    """`meshaudit.redaction.rules` of a record as {name: count} (each name at most once)."""
    out = {}
    for item in rec.attr("meshaudit.redaction.rules", []) or []:
        name, _, count = item.rpartition(":")
        assert name and count.isdigit(), f"bad redaction.rules item {item!r}"
        assert name not in out, f"{name} listed twice: {rec.attr('meshaudit.redaction.rules')}"
        out[name] = int(count)
    return out


def windows(s: str, n: int) -> set[str]:
    """Every n-character fragment of s."""
    return {s[i:i + n] for i in range(len(s) - n + 1)}
