"""Where personal data is in a text, and the text with it masked. Pure.

Pattern recognizers, each a candidate pattern and a validator that cuts false positives: e-mail addresses
(a domain with a letter TLD), payment card numbers (13-19 digits of a known issuer prefix passing the Luhn
check), IBANs (the country's length and the ISO 13616 mod-97 check), US social security numbers (written
AAA-GG-SSSS or with spaces; never-issued areas, groups and serials refused), IPv4 and IPv6 addresses
(parsed by `ipaddress`), and phone numbers (Google's libphonenumber, through `phonenumbers`, keeping only
numbers valid for their region: US national formats, any country with a leading `+`).

Why not presidio-analyzer: its pattern recognizers are the same kind of regex-plus-checksum (its phone
recognizer is `phonenumbers` too), but it installs spaCy and ~20 other packages (375 MB), takes 4 s to
import, its e-mail recognizer fetches the public-suffix list over the network (tldextract) on first use,
and it took ~35 ms per KB of text against ~1-6 ms here (docs/ai-gateway.md has the comparison).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import phonenumbers

EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"
CREDIT_CARD = "CREDIT_CARD"
IBAN = "IBAN_CODE"
US_SSN = "US_SSN"
IP_ADDRESS = "IP_ADDRESS"
KINDS = (EMAIL, IBAN, CREDIT_CARD, US_SSN, IP_ADDRESS, PHONE)   # where spans overlap, the earlier kind wins

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
                    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}")
_SSN = re.compile(r"(?<![\w-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\w-])")
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.]*\w)")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])")
# Issuer prefixes (IIN ranges) of the card networks: Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay,
# Maestro. A random digit string passes Luhn one time in ten; the prefix cuts that further.
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9]|2)|3(?:0[0-5]|[689])|35|"
                          r"5[06-8]|6\d")
# ISO 13616 IBAN lengths by country (the SWIFT IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "BY": 28,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19,
    "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
PHONE_REGION = "US"   # numbers written without a country code are read as US numbers


@dataclass(frozen=True)
class PiiSpan:
    start: int
    end: int
    kind: str


def find_pii(text: str) -> list[PiiSpan]:
    """The personal data in `text`, as non-overlapping spans in text order."""
    found = [*_emails(text), *_ibans(text), *_cards(text), *_ssns(text), *_ips(text), *_phones(text)]
    found.sort(key=lambda s: (KINDS.index(s.kind), s.start))
    kept: list[PiiSpan] = []
    for span in found:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def mask_pii(text: str, spans: list[PiiSpan] | None = None) -> str:
    """`text` with every span replaced by its kind in brackets, e.g. `[EMAIL_ADDRESS]`."""
    spans = find_pii(text) if spans is None else spans
    if not spans:
        return text
    out, at = [], 0
    for span in spans:
        out += [text[at:span.start], f"[{span.kind}]"]
        at = span.end
    out.append(text[at:])
    return "".join(out)


def _emails(text: str) -> list[PiiSpan]:
    if "@" not in text:
        return []
    return [PiiSpan(m.start(), m.end(), EMAIL) for m in _EMAIL.finditer(text) if ".." not in m.group()]


def _cards(text: str) -> list[PiiSpan]:
    spans = []
    for m in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", m.group())
        if digits[:2] in ("34", "37") and len(digits) != 15:   # American Express numbers have 15 digits
            continue
        if 13 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and is_luhn_valid(digits) and len(set(digits)) > 1:
            spans.append(PiiSpan(m.start(), m.end(), CREDIT_CARD))
    return spans


def is_luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _ibans(text: str) -> list[PiiSpan]:
    spans = []
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2])
        if length is None:
            continue
        # The pattern may run on into the next word: keep exactly the country's length of characters.
        end, count = m.start(), 0
        while end < m.end() and count < length:
            count += text[end] != " "
            end += 1
        compact = text[m.start():end].replace(" ", "")
        if len(compact) == length and (end == len(text) or not text[end].isalnum()) and is_iban_valid(compact):
            spans.append(PiiSpan(m.start(), end, IBAN))
    return spans


def is_iban_valid(compact: str) -> bool:
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _ssns(text: str) -> list[PiiSpan]:
    spans = []
    for m in _SSN.finditer(text):
        area, group, serial = m.group(1), m.group(3), m.group(4)
        if area in ("000", "666") or area >= "900" or group == "00" or serial == "0000":
            continue
        spans.append(PiiSpan(m.start(), m.end(), US_SSN))
    return spans


def _ips(text: str) -> list[PiiSpan]:
    spans = []
    for m in _IPV4.finditer(text):
        if _parses(m.group(), ipaddress.IPv4Address):
            spans.append(PiiSpan(m.start(), m.end(), IP_ADDRESS))
    if text.count(":") >= 2:
        for m in _IPV6.finditer(text):
            candidate = m.group().split("%")[0]
            if sum(c.isalnum() for c in candidate) >= 2 and _parses(candidate, ipaddress.IPv6Address):
                spans.append(PiiSpan(m.start(), m.end(), IP_ADDRESS))
    return spans


def _parses(candidate: str, kind) -> bool:
    try:
        kind(candidate)
    except ValueError:
        return False
    return True


def _phones(text: str) -> list[PiiSpan]:
    if sum(c.isdigit() for c in text) < 7:
        return []
    return [PiiSpan(m.start, m.end, PHONE)
            for m in phonenumbers.PhoneNumberMatcher(text, PHONE_REGION, leniency=phonenumbers.Leniency.VALID)]
