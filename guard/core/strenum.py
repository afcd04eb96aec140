"""StrEnum: a closed set of string values that still is a string (enum.StrEnum before 3.11)."""

from __future__ import annotations

import enum


class StrEnum(str, enum.Enum):
    """An enum whose members are their values: equal to, hashed, printed, formatted and
    JSON-encoded as the plain string, so config files, status documents and comparisons
    with strings read the same as before the value became an enum."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
