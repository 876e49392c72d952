"""YAML text -> a tree that remembers the file and line of every value, and the `extends` merge.

PyYAML's composer already keeps marks on nodes; we keep them through the deep merge of an `extends` chain so
that every message can name the file a value came from, not only the file that was loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor


@dataclass(frozen=True)
class Loc:
    file: str
    line: int


@dataclass
class YNode:
    """A YAML value with its location. `value` is a dict (mapping), list (sequence) or a Python scalar."""

    value: Any
    loc: Loc
    key_locs: dict[str, Loc] = field(default_factory=dict)

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)


@dataclass(frozen=True)
class Diagnostic:
    file: str
    line: int
    path: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        return f"{self.file}:{self.line}: {self.path or '<top>'}: {kind}{self.message}"


class _Scalars(SafeConstructor):
    pass


def _convert(node: yaml.Node, file: str, path: str, out: list[Diagnostic]) -> YNode:
    loc = Loc(file, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        items: dict[str, YNode] = {}
        key_locs: dict[str, Loc] = {}
        for k_node, v_node in node.value:
            kloc = Loc(file, k_node.start_mark.line + 1)
            key = _scalar(k_node, file, out, path)
            if not isinstance(key, str):
                key = str(key)
            sub = f"{path}.{key}" if path else key
            if key in items:
                out.append(Diagnostic(file, kloc.line, sub, "duplicate key (each key may appear once)"))
                continue
            items[key] = _convert(v_node, file, sub, out)
            key_locs[key] = kloc
        return YNode(items, loc, key_locs)
    if isinstance(node, yaml.SequenceNode):
        return YNode([_convert(n, file, f"{path}[{i}]", out) for i, n in enumerate(node.value)], loc)
    return YNode(_scalar(node, file, out, path), loc)


def _scalar(node: yaml.Node, file: str, out: list[Diagnostic], path: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        out.append(Diagnostic(file, node.start_mark.line + 1, path, "a mapping key must be a plain value"))
        return "<invalid>"
    try:
        return _Scalars().construct_object(node, deep=True)
    except (ConstructorError, ValueError) as e:
        out.append(Diagnostic(file, node.start_mark.line + 1, path, f"invalid value: {e}"))
        return None


def parse_yaml_text(text: str, file: str, out: list[Diagnostic]) -> YNode | None:
    """Parse one document; syntax errors become located diagnostics."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        problem = e.problem or "syntax error"
        out.append(Diagnostic(file, line, "", f"YAML syntax error: {problem}"))
        return None
    except yaml.YAMLError as e:
        out.append(Diagnostic(file, 1, "", f"YAML error: {e}"))
        return None
    if node is None:
        return YNode({}, Loc(file, 1))
    return _convert(node, file, "", out)


def merge(base: YNode, over: YNode) -> YNode:
    """Deep merge: mappings merge key by key, anything else (lists included) is replaced by `over`."""
    if not (base.is_map and over.is_map):
        return over
    merged = dict(base.value)
    key_locs = dict(base.key_locs)
    for key, node in over.value.items():
        merged[key] = merge(merged[key], node) if key in merged else node
        key_locs[key] = over.key_locs.get(key, node.loc)
    return YNode(merged, over.loc, key_locs)


def load_chain(
    path: str, out: list[Diagnostic], files: list[bytes] | None = None, _stack: tuple[str, ...] = ()
) -> YNode | None:
    """Load `path` and its `extends` chain, merged; cycles and missing files are located errors.

    The raw bytes of every file read are appended to `files` (for the configuration digest).
    """
    real = os.path.realpath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if files is not None:
            files.append(raw)
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        out.append(Diagnostic(path, 1, "", f"not UTF-8 text: {e.reason}"))
        return None
    node = parse_yaml_text(text, path, out)
    if node is None:
        return None
    if not node.is_map:
        out.append(Diagnostic(path, node.loc.line, "", "the site file must be a mapping of keys"))
        return None
    ext = node.value.pop("extends", None)
    if ext is None:
        return node
    ext_line = node.key_locs.pop("extends", ext.loc).line
    if not isinstance(ext.value, str) or not ext.value:
        out.append(Diagnostic(path, ext_line, "extends", "expected a file name"))
        return node
    base_path = os.path.join(os.path.dirname(path), ext.value)
    if os.path.realpath(base_path) in (*_stack, real):
        chain = " -> ".join([*(_short(p) for p in (*_stack, real)), _short(base_path)])
        out.append(Diagnostic(path, ext_line, "extends", f"extends cycle: {chain}"))
        return node
    if not os.path.isfile(base_path):
        out.append(Diagnostic(path, ext_line, "extends", f"file not found: {base_path}"))
        return node
    base = load_chain(base_path, out, files, (*_stack, real))
    return node if base is None else merge(base, node)


def _short(p: str) -> str:
    return os.path.basename(p)
