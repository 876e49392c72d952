"""Located YAML tree -> frozen model, driven by the model's own type hints.

Every problem is collected (not raised) so that a file's errors are all reported in one run.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from typing import Any

from bootstrapd.config.types import Kind, ValueProblem
from bootstrapd.config.yamlnodes import Diagnostic, Loc, YNode


class _Failed:
    """Marker: this value had errors (already reported)."""


FAILED = _Failed()


def yaml_key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return typing.get_args(tp)[1].name  # type: ignore[no-any-return]
    if origin is tuple:
        return "list"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(str(m.value) for m in tp)
    return {bool: "true or false", int: "integer", str: "string"}.get(tp, str(tp))


class Builder:
    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.locs: dict[str, Loc] = {}

    def error(self, loc: Loc, path: str, message: str) -> _Failed:
        self.diagnostics.append(Diagnostic(loc.file, loc.line, path, message))
        return FAILED

    def build(self, tp: Any, node: YNode, path: str) -> Any:
        self.locs[path] = node.loc
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return self._kind(typing.get_args(tp)[1], node, path)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            return None if node.value is None else self.build(args[0], node, path)
        if origin is tuple:
            return self._tuple(typing.get_args(tp)[0], node, path)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self._dataclass(tp, node, path)
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return self._enum(tp, node, path)
        return self._plain(tp, node, path)

    def _kind(self, kind: Kind, node: YNode, path: str) -> Any:
        try:
            if kind.parse_at is not None:
                return kind.parse_at(node.value, node.loc.file)
            return kind.parse(node.value)
        except ValueProblem as e:
            return self.error(node.loc, path, str(e))

    def _plain(self, tp: Any, node: YNode, path: str) -> Any:
        v = node.value
        if tp is Any:
            return _plain_value(node)
        ok = isinstance(v, tp) and not (tp is int and isinstance(v, bool))
        if not ok:
            return self.error(node.loc, path, f"expected {_type_name(tp)}, got {_describe(v)}")
        return v

    def _enum(self, tp: type[enum.Enum], node: YNode, path: str) -> Any:
        for member in tp:
            if node.value == member.value:
                return member
        hint = _did_you_mean(str(node.value), [str(m.value) for m in tp])
        got = _describe(node.value)
        return self.error(node.loc, path, f"expected one of {_type_name(tp)}, got {got}{hint}")

    def _tuple(self, item: Any, node: YNode, path: str) -> Any:
        if not node.is_seq:
            return self.error(node.loc, path, f"expected a list, got {_describe(node.value)}")
        items = [self.build(item, n, f"{path}[{i}]") for i, n in enumerate(node.value)]
        return FAILED if any(i is FAILED for i in items) else tuple(items)

    def _dataclass(self, tp: type, node: YNode, path: str) -> Any:
        if not node.is_map:
            return self.error(node.loc, path, f"expected a mapping, got {_describe(node.value)}")
        hints = typing.get_type_hints(tp, include_extras=True)
        fields = {yaml_key(f): f for f in dataclasses.fields(tp)}
        kwargs: dict[str, Any] = {}
        failed = False
        for key, sub in node.value.items():
            sub_path = f"{path}.{key}" if path else key
            if key not in fields:
                hint = _did_you_mean(key, list(fields))
                self.error(node.key_locs.get(key, sub.loc), sub_path, f"unknown key{hint}")
                failed = True
                continue
            f = fields[key]
            value = self.build(hints[f.name], sub, sub_path)
            self.locs[sub_path] = node.key_locs.get(key, sub.loc)  # a block value starts below its key
            failed |= value is FAILED
            kwargs[f.name] = value
        for key, f in fields.items():
            missing = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if missing and f.name not in kwargs:
                sub_path = f"{path}.{key}" if path else key
                self.error(node.loc, sub_path, "required key is missing")
                failed = True
        return FAILED if failed else tp(**kwargs)


def _plain_value(node: YNode) -> Any:
    if node.is_map:
        return {k: _plain_value(v) for k, v in node.value.items()}
    if node.is_seq:
        return [_plain_value(v) for v in node.value]
    return node.value


def _describe(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"boolean {str(v).lower()}"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, int | float):
        return f"number {v}"
    return f"{v!r}"


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
