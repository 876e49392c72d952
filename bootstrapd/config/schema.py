"""JSON Schema of the site file, generated from the model (never written twice by hand)."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from bootstrapd import __version__
from bootstrapd.config.build import yaml_key
from bootstrapd.config.model import Site


def json_schema() -> dict[str, Any]:
    """A file with `extends` is a partial site (nothing required); any other file is a whole site."""
    defs: dict[str, Any] = {}
    extends = {"type": "string", "description": "a site file (relative to this one) merged underneath"}
    for partial in (False, True):
        ref = _schema(Site, defs, partial)["$ref"].rsplit("/", 1)[1]
        defs[ref]["properties"] = {"extends": extends, **defs[ref]["properties"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:bootstrapd:site:{__version__}",
        "title": "bootstrapd site file",
        "type": "object",
        "if": {"required": ["extends"]},
        "then": {"$ref": "#/$defs/SitePartial"},
        "else": {"$ref": "#/$defs/Site"},
        "$defs": defs,
    }


def _object(tp: type, defs: dict[str, Any], partial: bool) -> dict[str, Any]:
    hints = typing.get_type_hints(tp, include_extras=True)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(tp):
        key = yaml_key(f)
        prop = _schema(hints[f.name], defs, partial)
        if "doc" in f.metadata:
            prop = {**prop, "description": f.metadata["doc"]}
        if f.default is not dataclasses.MISSING and isinstance(f.default, str | int | bool):
            prop["default"] = f.default
        elif isinstance(f.default, enum.Enum):
            prop["default"] = f.default.value
        props[key] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(key)
    out: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": props}
    if required and not partial:
        out["required"] = required
    if tp.__doc__ and not tp.__doc__.startswith(tp.__name__ + "("):
        out["description"] = tp.__doc__.strip().splitlines()[0]
    return out


def _schema(tp: Any, defs: dict[str, Any], partial: bool) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return dict(typing.get_args(tp)[1].schema)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_schema(args[0], defs, partial), {"type": "null"}]}
    if origin is tuple:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], defs, partial)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__ + ("Partial" if partial else "")
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            defs[name] = _object(tp, defs, partial)
        return {"$ref": f"#/$defs/{name}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is str:
        return {"type": "string"}
    return {}
