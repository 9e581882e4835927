"""Registry errors, named exactly as Cloud Map's exceptions so the API maps them one to one."""

from __future__ import annotations

from typing import Any

__all__ = ["RegistryError", "invalid_input"]


class RegistryError(Exception):
    """A request the registry refuses; ``code`` is the Cloud Map exception name.

    ``fields`` are the extra members the model defines on that exception (for example
    ``NamespaceId`` on NamespaceAlreadyExists, ``DuplicateOperationId`` on DuplicateRequest).
    """

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields

    def __repr__(self) -> str:
        return f"RegistryError({self.code!r}, {self.message!r})"


def invalid_input(message: str) -> RegistryError:
    return RegistryError("InvalidInput", message)
