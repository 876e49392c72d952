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
    """Builds as much of the model as the file allows, so that semantic checks can still run.

    A failed field takes its default; a failed list item is left out; a failed required field outside a
    list (the site's own `listen`, `domain`, ...) holds FAILED. Each such path is in `failed`, and so is the
    key a misspelt key probably meant (it holds its default, not what the file meant); for a list
    with items left out, the original indices of the kept and the left-out items are in `indices` and
    `dropped`, and the fields of a left-out item that did build are in `partial`: checks skip what they
    cannot judge, and still name every item by its index in the file.
    """

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.locs: dict[str, Loc] = {}
        self.failed: set[str] = set()
        self.indices: dict[str, tuple[int, ...]] = {}
        self.dropped: dict[str, tuple[int, ...]] = {}
        self.partial: dict[str, dict[str, Any]] = {}

    def error(self, loc: Loc, path: str, message: str) -> _Failed:
        self.diagnostics.append(Diagnostic(loc.file, loc.line, path, message))
        self.failed.add(path)
        return FAILED

    def build(self, tp: Any, node: YNode, path: str, keep: bool = False) -> Any:
        """`keep`: a dataclass with failed required fields is still built (FAILED in those fields)."""
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
            return self._dataclass(tp, node, path, keep)
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
        kept: list[Any] = []
        where: list[int] = []
        lost: list[int] = []
        for i, n in enumerate(node.value):
            value = self.build(item, n, f"{path}[{i}]")
            if value is FAILED:
                self.failed.add(f"{path}[{i}]")
                lost.append(i)
            else:
                kept.append(value)
                where.append(i)
        if lost:
            self.indices[path], self.dropped[path] = tuple(where), tuple(lost)
        return tuple(kept)

    def _dataclass(self, tp: type, node: YNode, path: str, keep: bool) -> Any:
        if not node.is_map:
            return self.error(node.loc, path, f"expected a mapping, got {_describe(node.value)}")
        hints = typing.get_type_hints(tp, include_extras=True)
        fields = {yaml_key(f): f for f in dataclasses.fields(tp)}
        kwargs: dict[str, Any] = {}
        failed = False
        for key, sub in node.value.items():
            sub_path = f"{path}.{key}" if path else key
            if key not in fields:
                meant = _closest(key, list(fields))
                hint = f" (did you mean '{meant}'?)" if meant else ""
                self.error(node.key_locs.get(key, sub.loc), sub_path, f"unknown key{hint}")
                if meant:  # the key it probably meant is not what the file says either
                    self.failed.add(f"{path}.{meant}" if path else meant)
                continue
            f = fields[key]
            value = self.build(hints[f.name], sub, sub_path, keep and _required(f))
            self.locs[sub_path] = node.key_locs.get(key, sub.loc)  # a block value starts below its key
            if value is FAILED:
                self.failed.add(sub_path)
                if not _required(f):
                    continue  # the default stands in
                failed = True
            kwargs[f.name] = value
        for key, f in fields.items():
            if _required(f) and f.name not in kwargs:
                self.error(node.loc, f"{path}.{key}" if path else key, "required key is missing")
                kwargs[f.name] = FAILED
                failed = True
        if failed and not keep:
            self.partial[path] = {k: v for k, v in kwargs.items() if v is not FAILED}
            return FAILED
        return tp(**kwargs)


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


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


def _closest(word: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = _closest(word, choices)
    return f" (did you mean '{close}'?)" if close else ""
