"""Base for every typed config section: unknown keys are errors, values are validated."""
from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

_SCALARS = {int: ("int_type", "Input should be a valid integer"),
            float: ("float_type", "Input should be a valid number"),
            bool: ("bool_type", "Input should be a valid boolean")}


def _scalar(ann: Any) -> type | None:
    """int, float or bool when a field takes only that (and None); else None."""
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(ann) if a is not type(None)]
        ann = members[0] if len(members) == 1 else None
    return ann if ann in _SCALARS else None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, v: Any, info: ValidationInfo) -> Any:
        """A quoted number or boolean (`fps = "30"`, `enabled = "yes"`) or a boolean for a number (`port = true`)
        is an error, not converted: TOML has the types, and a string there is usually a mistake."""
        if isinstance(v, (str, bool)) and info.field_name is not None:
            want = _scalar(cls.model_fields[info.field_name].annotation)
            if want is not None and not (want is bool and isinstance(v, bool)):
                raise PydanticCustomError(*_SCALARS[want])
        return v
