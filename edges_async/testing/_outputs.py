"""Run outputs, generated on demand, and the opaque cursors that page through them.

An output is a pure function of (run, index): nothing is stored, so a run of a
million outputs costs no memory and any page is as cheap as the first. The
record looks like a LinkedIn person and carries its ``index`` so a client's
exactly-once delivery can be checked.

A cursor names the run and the index of the next output, sealed with a keyed
hash: a cursor of another run, or a forged one, is refused. It stays valid
while the run grows, so a client at the end of a running run's outputs can
come back later with the same cursor.
"""

from __future__ import annotations

import struct
from typing import Any

from ._sealing import Sealer

__all__ = ["CursorCodec", "output_page"]

_MASK = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15

# (display name, URL slug) pairs; a few carry accents to exercise UTF-8.
_FIRST_NAMES: tuple[tuple[str, str], ...] = (
    ("Ada", "ada"),
    ("Alan", "alan"),
    ("Grace", "grace"),
    ("Linus", "linus"),
    ("Margaret", "margaret"),
    ("Dennis", "dennis"),
    ("Barbara", "barbara"),
    ("Ken", "ken"),
    ("Frances", "frances"),
    ("Edsger", "edsger"),
    ("Hedy", "hedy"),
    ("Tim", "tim"),
    ("Radia", "radia"),
    ("Guido", "guido"),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Chloé", "chloe"),
    ("Søren", "soren"),
    ("Amélie", "amelie"),
    ("Yuki", "yuki"),
    ("Priya", "priya"),
    ("Omar", "omar"),
    ("Ines", "ines"),
    ("Kwame", "kwame"),
)
_LAST_NAMES: tuple[tuple[str, str], ...] = (
    ("Lovelace", "lovelace"),
    ("Turing", "turing"),
    ("Hopper", "hopper"),
    ("Torvalds", "torvalds"),
    ("Hamilton", "hamilton"),
    ("Ritchie", "ritchie"),
    ("Liskov", "liskov"),
    ("Thompson", "thompson"),
    ("Allen", "allen"),
    ("Dijkstra", "dijkstra"),
    ("Lamarr", "lamarr"),
    ("Berners-Lee", "berners-lee"),
    ("Perlman", "perlman"),
    ("van Rossum", "van-rossum"),
    ("Müller", "muller"),
    ("García", "garcia"),
    ("Dubois", "dubois"),
    ("Nakamura", "nakamura"),
    ("Okafor", "okafor"),
    ("Svensson", "svensson"),
)
_TITLES = (
    "Software Engineer",
    "Head of Growth",
    "Product Manager",
    "Data Scientist",
    "Sales Director",
    "Founder & CEO",
    "Recruiter",
    "Marketing Lead",
    "Account Executive",
    "CTO",
    "Customer Success Manager",
    "Operations Analyst",
)
_COMPANIES = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark Industries",
    "Wayne Enterprises",
    "Cyberdyne",
    "Soylent",
    "Tyrell",
    "Wonka",
    "Vandelay Industries",
)
_LOCATIONS = (
    "Paris, Île-de-France, France",
    "London, England, United Kingdom",
    "Berlin, Germany",
    "New York, New York, United States",
    "San Francisco Bay Area",
    "Lyon, Auvergne-Rhône-Alpes, France",
    "Amsterdam, North Holland, Netherlands",
    "Madrid, Spain",
    "Toronto, Ontario, Canada",
    "Tokyo, Japan",
)


def _mix(value: int) -> int:
    """SplitMix64's finaliser: 64 well-mixed bits from any 64-bit value."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK
    return value ^ (value >> 31)


def _fold(seed: int) -> int:
    """A 64-bit seed from any non-negative integer (a uuid's 128 bits)."""
    folded = 0
    while seed:
        folded ^= seed & _MASK
        seed >>= 64
    return folded


def _record(seed64: int, index: int) -> dict[str, Any]:
    bits = _mix((seed64 + (index + 1) * _GAMMA) & _MASK)
    first, first_slug = _FIRST_NAMES[bits % len(_FIRST_NAMES)]
    last, last_slug = _LAST_NAMES[(bits >> 8) % len(_LAST_NAMES)]
    title = _TITLES[(bits >> 16) % len(_TITLES)]
    company = _COMPANIES[(bits >> 24) % len(_COMPANIES)]
    profile_id = (bits >> 32) & 0x7FFFFFFF
    return {
        "index": index,
        "full_name": f"{first} {last}",
        "first_name": first,
        "last_name": last,
        "headline": f"{title} at {company}",
        "job_title": title,
        "company_name": company,
        "location": _LOCATIONS[(bits >> 28) % len(_LOCATIONS)],
        "connections_count": (bits >> 40) % 500 + 1,
        "linkedin_profile_id": profile_id,
        "linkedin_profile_url": (
            f"https://www.linkedin.com/in/{first_slug}-{last_slug}-{profile_id:08x}/"
        ),
    }


def output_page(seed: int, start: int, stop: int) -> list[dict[str, Any]]:
    """Outputs ``start`` (inclusive) to ``stop`` (exclusive) of a run."""
    seed64 = _fold(seed)
    return [_record(seed64, index) for index in range(start, stop)]


class CursorCodec:
    """Opaque output cursors: (run id, next index), sealed with a keyed hash.

    The wire form is 32 URL-safe base64 characters: 8 bytes of run id, 8 bytes
    of index, 8 bytes of MAC.
    """

    __slots__ = ("_sealer",)

    _PAYLOAD = struct.Struct(">QQ")

    def __init__(self, key: bytes) -> None:
        self._sealer = Sealer(key)

    def encode(self, run_id: int, index: int) -> str:
        """The cursor of output ``index`` of run ``run_id``."""
        return self._sealer.seal(self._PAYLOAD.pack(run_id, index))

    def decode(self, cursor: str, run_id: int) -> int:
        """The index a cursor of run ``run_id`` points at; ``ValueError`` if it is not one."""
        payload = self._sealer.open(cursor, self._PAYLOAD.size)
        cursor_run, index = self._PAYLOAD.unpack(payload)
        if cursor_run != run_id:
            raise ValueError("cursor belongs to another run")
        return int(index)

    def __repr__(self) -> str:
        return "CursorCodec(<key>)"
