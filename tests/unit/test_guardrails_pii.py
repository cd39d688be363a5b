"""PII detection (services/router/policy/pii.py) on a labelled set: measured precision and recall, per kind
and overall, and masking. Every example is made up; card numbers are the networks' published test numbers,
IBANs the registry's examples, SSNs outside the never-issued ranges."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from services.router.policy.pii import (
    CREDIT_CARD, EMAIL, IBAN, IP_ADDRESS, PHONE, US_SSN, find_pii, is_iban_valid, is_luhn_valid, mask_pii,
)

# (text, [(kind, the exact substring)]): what a detector should find, and nothing else.
LABELLED = [
    ("Write to john.doe@example.com for details.", [(EMAIL, "john.doe@example.com")]),
    ("contact: ANNA_B+news@mail.co.uk", [(EMAIL, "ANNA_B+news@mail.co.uk")]),
    ("Send it to ops-team@sub.example.org, then cc me.", [(EMAIL, "ops-team@sub.example.org")]),
    ("emails: a.b@c.io and x1@y2.dev", [(EMAIL, "a.b@c.io"), (EMAIL, "x1@y2.dev")]),
    ("<li>jane@corp.example.net</li>", [(EMAIL, "jane@corp.example.net")]),
    ("My card is 4111 1111 1111 1111, expiring soon", [(CREDIT_CARD, "4111 1111 1111 1111")]),
    ("pay with 5500-0000-0000-0004 please", [(CREDIT_CARD, "5500-0000-0000-0004")]),
    ("amex 378282246310005 on file", [(CREDIT_CARD, "378282246310005")]),
    ("Discover: 6011111111111117.", [(CREDIT_CARD, "6011111111111117")]),
    ("card=4012888888881881", [(CREDIT_CARD, "4012888888881881")]),
    ("JCB 3530 1113 3330 0000 ok", [(CREDIT_CARD, "3530 1113 3330 0000")]),
    ("Mastercard 2223 0031 2200 3222", [(CREDIT_CARD, "2223 0031 2200 3222")]),
    ("Diners 30569309025904", [(CREDIT_CARD, "30569309025904")]),
    ("IBAN DE89 3704 0044 0532 0130 00 for the transfer", [(IBAN, "DE89 3704 0044 0532 0130 00")]),
    ("iban: GB29NWBK60161331926819", [(IBAN, "GB29NWBK60161331926819")]),
    ("Pay FR14 2004 1010 0505 0001 3M02 606 today", [(IBAN, "FR14 2004 1010 0505 0001 3M02 606")]),
    ("NL91ABNA0417164300", [(IBAN, "NL91ABNA0417164300")]),
    ("account CH93 0076 2011 6238 5295 7 at UBS", [(IBAN, "CH93 0076 2011 6238 5295 7")]),
    ("ES9121000418450200051332.", [(IBAN, "ES9121000418450200051332")]),
    ("SSN 123-45-6789 on the form", [(US_SSN, "123-45-6789")]),
    ("social security number: 219 09 9998", [(US_SSN, "219 09 9998")]),
    ("her SSN is 536-22-1459.", [(US_SSN, "536-22-1459")]),
    ("ssn=001-01-0001", [(US_SSN, "001-01-0001")]),
    ("The server is at 192.168.10.4 now.", [(IP_ADDRESS, "192.168.10.4")]),
    ("connect to 8.8.8.8", [(IP_ADDRESS, "8.8.8.8")]),
    ("from 2001:db8::8a2e:370:7334 over v6", [(IP_ADDRESS, "2001:db8::8a2e:370:7334")]),
    ("host fe80::1ff:fe23:4567:890a", [(IP_ADDRESS, "fe80::1ff:fe23:4567:890a")]),
    ("gateway 10.0.0.1, dns 1.1.1.1", [(IP_ADDRESS, "10.0.0.1"), (IP_ADDRESS, "1.1.1.1")]),
    ("Call me at (415) 555-0132 tomorrow", [(PHONE, "(415) 555-0132")]),
    ("phone: 212-555-0199", [(PHONE, "212-555-0199")]),
    ("UK office +44 20 7946 0958.", [(PHONE, "+44 20 7946 0958")]),
    ("ring +1 650 253 0000 or +33 1 42 68 53 00", [(PHONE, "+1 650 253 0000"), (PHONE, "+33 1 42 68 53 00")]),
    ("Mobile: +49 30 901820", [(PHONE, "+49 30 901820")]),
    ("call 312.555.0147 now", [(PHONE, "312.555.0147")]),
    ("reach him on +61 2 9374 4000", [(PHONE, "+61 2 9374 4000")]),
    ("Hi, I'm Ann (ann@x.org, 617-555-0123), card 4242 4242 4242 4242, IBAN BE68539007547034, ip 172.16.0.9.",
     [(EMAIL, "ann@x.org"), (PHONE, "617-555-0123"), (CREDIT_CARD, "4242 4242 4242 4242"),
      (IBAN, "BE68539007547034"), (IP_ADDRESS, "172.16.0.9")]),
    # Hard negatives: look like PII, are not.
    ("Order 12345678 shipped on 2024-01-05 at 10:30:15.", []),
    ("The number 4111 1111 1111 1112 fails the Luhn check.", []),
    ("Version 1.2.3 of the library, build 2.10.4.5.6", []),
    ("IBAN-like DE89 3704 0044 0532 0130 01 with a bad checksum", []),
    ("SSN 000-12-3456 and 666-12-3456 and 912-34-5678 were never issued", []),
    ("Use the @decorator syntax, or email me @ noon", []),
    ("ratio 3:4:5 and time 12:30:45", []),
    ("999.999.999.999 is not an address", []),
    ("a user@localhost is no address on the internet", []),
    ("Invoice total 1234567.89 USD", []),
    ("0000 0000 0000 0000 is not a card", []),
    ("ISBN 978-3-16-148410-0", []),
    ("Call extension 555 please", []),
    ("The year 2023 had 365 days and 8760 hours", []),
    ("Coordinates 48.8566, 2.3522", []),
    ("python==3.11.4 and numpy>=2.0", []),
    ("Tracking number 1Z999AA10123456784", []),
    ("See RFC 5322 section 3.4.1", []),
    ("The hash is 5d41402abc4b2a76b9719d911017c592", []),
    ("Listen on port 8080 and 443", []),
]


def _measure() -> tuple[Counter, Counter, Counter]:
    hits, found, expected = Counter(), Counter(), Counter()
    for text, labels in LABELLED:
        got = {(s.kind, text[s.start:s.end]) for s in find_pii(text)}
        want = set(labels)
        for kind, _ in got:
            found[kind] += 1
        for kind, _ in want:
            expected[kind] += 1
        for kind, _ in got & want:
            hits[kind] += 1
    return hits, found, expected


def test_precision_and_recall_on_the_labelled_set():
    hits, found, expected = _measure()
    precision = sum(hits.values()) / sum(found.values())
    recall = sum(hits.values()) / sum(expected.values())
    print(f"\nPII precision {precision:.3f} recall {recall:.3f} over {sum(expected.values())} labelled spans")
    for kind in sorted(expected):
        print(f"  {kind}: precision {hits[kind] / max(1, found[kind]):.2f} recall {hits[kind] / expected[kind]:.2f}")
    assert precision >= 0.95
    assert recall >= 0.95
    for kind in (EMAIL, PHONE, CREDIT_CARD, IBAN, US_SSN, IP_ADDRESS):   # every kind is found at all
        assert hits[kind] / expected[kind] >= 0.8, kind


@pytest.mark.parametrize("text, want", [
    pytest.param("mail a@b.co now", "mail [EMAIL_ADDRESS] now", id="email"),
    pytest.param("card 4111-1111-1111-1111.", "card [CREDIT_CARD].", id="card keeps the full stop"),
    pytest.param("x GB29NWBK60161331926819 IS MINE", "x [IBAN_CODE] IS MINE", id="iban stops at its length"),
    pytest.param("ip 10.1.2.3 and 555-12-3456", "ip [IP_ADDRESS] and [US_SSN]", id="two kinds"),
    pytest.param("nothing here", "nothing here", id="untouched"),
])
def test_mask_pii(text, want):
    assert mask_pii(text) == want


@pytest.mark.parametrize("digits, valid", [("4111111111111111", True), ("4111111111111112", False),
                                           ("378282246310005", True), ("79927398713", True)])
def test_luhn(digits, valid):
    assert is_luhn_valid(digits) is valid


@pytest.mark.parametrize("iban, valid", [("GB82WEST12345698765432", True), ("GB82WEST12345698765433", False),
                                         ("DE89370400440532013000", True)])
def test_iban_checksum(iban, valid):
    assert is_iban_valid(iban) is valid


def test_cost_of_checking_a_1_kb_prompt():
    """The figure docs/ai-gateway.md reports; the bound only catches a pathological regression."""
    prompt = ("Please summarize the meeting notes below and list the action items for each person. "
              "Reach Ann at ann@example.com or (415) 555-0132. ") * 8
    prompt = prompt[:1024]
    find_pii(prompt)
    runs = 50
    started = time.perf_counter()
    for _ in range(runs):
        find_pii(prompt)
    per_call_ms = (time.perf_counter() - started) / runs * 1000
    print(f"\nfind_pii on a 1 KB prompt: {per_call_ms:.2f} ms")
    assert per_call_ms < 50
