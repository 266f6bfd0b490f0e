"""Shared base for the API models.

Python attributes are snake_case, the wire format (YAML, the CRD) is camelCase, exactly the
names in API.md. Unknown fields are refused: the API server's strict field validation does the
same, and a typo that silently does nothing is the worst kind of error.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def to_wire(self) -> dict:
        """The camelCase dict a user would write (defaults included, unset optionals dropped)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
