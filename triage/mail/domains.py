"""Registrable domains, by the Public Suffix List: which addresses belong to one organisation."""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the snapshot bundled with the package: no network


@lru_cache(maxsize=4096)
def registrable_domain(domain: str) -> str:
    """The domain an organisation registered ('mail.college.ac.uk' -> 'college.ac.uk'), by the
    Public Suffix List.

    A bare public suffix, or a name the list does not know, is its own registrable domain.
    """
    name = (domain or "").strip().strip(".").lower()
    if not name:
        return ""
    return _suffixes().privatesuffix(name) or name


def address_domain(address: str) -> str:
    """The registrable domain of an email address ('' if it has none)."""
    return registrable_domain(address.rpartition("@")[2]) if "@" in (address or "") else ""
