"""config/site.example.yaml documents every key of the model: a key added to model.py fails here until the
example shows it (and, with it, `bootstrapd check --strict`, which the loader tests run on the example)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from bootstrapd.config.build import yaml_key
from bootstrapd.config.model import Site

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "site.example.yaml"


def _dataclass_of(tp: Any) -> tuple[type | None, bool]:
    """The mapping type a field's value is (or holds a list of), and whether it is a list; None for scalars."""
    is_list = False
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return None, is_list  # a scalar kind (address, range, host:port...), written as one string
        if origin in (typing.Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        elif origin is tuple:
            tp, is_list = typing.get_args(tp)[0], True
        else:
            return (tp if dataclasses.is_dataclass(tp) and isinstance(tp, type) else None), is_list


def _walk(tp: type, value: Any, path: str, seen: dict[type, set[str]], where: dict[type, str]) -> None:
    """Record which keys of each model class the example shows (a class used in several places, such as
    Options, counts as documented when each key appears in one of them). Classes under absent keys are
    walked too, so that every class of the model is reached."""
    where.setdefault(tp, path)
    shown = seen.setdefault(tp, set())
    hints = typing.get_type_hints(tp, include_extras=True)
    for f in dataclasses.fields(tp):
        key = yaml_key(f)
        sub, is_list = _dataclass_of(hints[f.name])
        sub_path = (f"{path}.{key}" if path else key) + ("[]" if is_list else "")
        present = isinstance(value, dict) and key in value
        if present:
            shown.add(key)
        if sub is None:
            continue
        items = ((value[key] or []) if is_list else [value[key]]) if present else []
        for item in items:
            _walk(sub, item, sub_path, seen, where)
        if not items and sub not in seen:
            _walk(sub, None, sub_path, seen, where)


def test_example_shows_every_key_of_the_model() -> None:
    seen: dict[type, set[str]] = {}
    where: dict[type, str] = {}
    _walk(Site, yaml.safe_load(EXAMPLE.read_text()), "", seen, where)
    missing = [f"{where[tp]}.{yaml_key(f)}".lstrip(".")
               for tp, shown in seen.items() for f in dataclasses.fields(tp) if yaml_key(f) not in shown]
    assert missing == [], f"config/site.example.yaml shows no example of: {', '.join(missing)}"


def test_every_model_class_is_reached() -> None:
    # The walk above must reach every class of model.py that the site file uses, or it proves nothing.
    seen: dict[type, set[str]] = {}
    _walk(Site, {}, "", seen, {})
    names = {tp.__name__ for tp in seen}
    assert {"Site", "Listen", "Dhcp", "Options", "Acs", "Vivso", "TypedValue", "Subnet", "Reservation",
            "DeviceClass", "Match", "RawOption", "Dns", "Soa", "Record", "SrvService", "SrvTarget", "Metrics",
            "Logging"} <= names
