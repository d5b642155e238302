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


def union_members(ann: Any) -> list:
    """The types a value of annotation `ann` may take: the members of a union (None left out), else [ann]
    (Annotated taken off)."""
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(ann) if a is not type(None)]
    return [ann]


def _strip(ann: Any) -> Any:
    """The annotation without Annotated and Optional (a union of several types: None, exempt)."""
    members = union_members(ann)
    if len(members) != 1:
        return None
    ann = members[0]
    while typing.get_origin(ann) is typing.Annotated:
        ann = typing.get_args(ann)[0]
    return ann


def _loose(v: Any, ann: Any) -> type | None:
    """The scalar type (int, float, bool) that `v`, or a value in its lists / tables, would be converted to from a
    string or a boolean; None when nothing would be."""
    ann = _strip(ann)
    if ann in (int, float):
        return ann if isinstance(v, (str, bool)) else None
    if ann is bool:
        return bool if isinstance(v, str) else None
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin in (list, tuple, set, frozenset) and isinstance(v, (list, tuple)) and args:
        fixed = origin is tuple and args[-1] is not Ellipsis
        for i, x in enumerate(v):
            if fixed and i >= len(args):
                break
            if (t := _loose(x, args[i] if fixed else args[0])) is not None:
                return t
    elif origin is dict and isinstance(v, dict) and len(args) == 2:
        return next((t for x in v.values() if (t := _loose(x, args[1])) is not None), None)
    return None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_coercion(cls, v: Any, info: ValidationInfo) -> Any:
        """A quoted number or boolean (`fps = "30"`, `enabled = "yes"`) or a boolean for a number (`port = true`),
        as a value or in a list or table of them (`polygon = [["10", "20"], ...]`), is an error, not converted: TOML
        has the types, and a string there is usually a mistake."""
        if info.field_name is not None and isinstance(v, (str, bool, list, tuple, dict)):
            want = _loose(v, cls.model_fields[info.field_name].annotation)
            if want is not None:
                kind, msg = _SCALARS[want]
                raise PydanticCustomError(kind, msg if isinstance(v, (str, bool)) else msg + " in every item")
        return v
