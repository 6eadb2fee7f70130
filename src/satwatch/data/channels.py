"""Channel names: the 27 seed SMAP channels and the subsystem each channel belongs to.

Telemanom names a channel ``<prefix>-<number>``; the prefix letter tells the spacecraft
subsystem. Example::

    >>> subsystem_of("E-3")
    'EPS'
"""

from __future__ import annotations

import logging
import re

from satwatch.exceptions import DataError

LOGGER = logging.getLogger(__name__)

SEED_CHANNELS: tuple[str, ...] = (
    "E-1", "E-2", "E-3", "E-4", "E-5",
    "A-1", "A-2", "A-3", "A-4", "A-5",
    "F-1", "F-2", "F-3",
    "T-1", "T-2", "T-3",
    "D-1", "D-2", "D-3", "D-4", "D-5",
    "S-1",
    "P-1", "P-2", "P-3", "P-4", "P-7",
)  # fmt: skip
"""The 27 SMAP channels the model repository serves, grouped by subsystem."""

SUBSYSTEMS: dict[str, str] = {
    "E": "EPS",
    "A": "ACS",
    "F": "FSW",
    "T": "TCS",
    "D": "Data",
    "S": "SS",
    "P": "PS",
}
"""Channel prefix -> subsystem: power, attitude, flight software, thermal, data, structure,
propulsion."""

OTHER_SUBSYSTEM = "Other"
"""Subsystem reported for prefixes the seed map does not name (SMAP B, G, R; MSL C, M)."""

_CHANNEL_RE = re.compile(r"^([A-Z])-(\d+)$")


def parse_channel(name: str) -> tuple[str, int]:
    """Split a channel id into its prefix letter and number.

    Args:
        name: A channel id such as ``"P-7"``.

    Returns:
        ``(prefix, number)``, e.g. ``("P", 7)``.

    Raises:
        DataError: The name is not ``<capital letter>-<number>``.
    """
    match = _CHANNEL_RE.match(name)
    if match is None:
        raise DataError(f"channel id {name!r} is not of the form <letter>-<number> (e.g. 'E-1')")
    return match.group(1), int(match.group(2))


def subsystem_of(channel: str) -> str:
    """Return the subsystem of a channel from its prefix (``"Other"`` for unmapped prefixes).

    Raises:
        DataError: ``channel`` is not a channel id.
    """
    prefix, _ = parse_channel(channel)
    return SUBSYSTEMS.get(prefix, OTHER_SUBSYSTEM)


def channel_sort_key(name: str) -> tuple[str, int]:
    """Sort key that puts ``A-2`` before ``A-10`` (natural order)."""
    return parse_channel(name)
