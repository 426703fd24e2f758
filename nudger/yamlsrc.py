"""YAML loading that remembers where every value stands, so errors can name file and line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Finding

Path_ = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so `on:` and `nee` stay text."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A value that looks like a date or a number but is none (2026-02-30, 2026-13-01, a number
        # of 5,000 digits) makes the constructor raise a bare ValueError: give it its place.
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as exc:
            value = str(node.value) if isinstance(node, yaml.ScalarNode) else node.tag
            value = value if len(value) <= 40 else value[:40] + "..."
            raise yaml.constructor.ConstructorError(
                "while reading a value", None, f"`{value}` cannot be read ({_first_line(exc)})", node.start_mark
            ) from None


def _first_line(exc: Exception) -> str:
    return str(exc).split("\n")[0].split(";")[0] or type(exc).__name__


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
    )


@dataclass
class Located:
    """A loaded YAML document with the line (1-based) of every key and item, by path."""

    file: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int:
        """The line of `path`, or of its nearest parent that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], dups: list[tuple[Path_, int]]):
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                dups.append((path + (key,), key_node.start_mark.line + 1))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines, dups)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines, dups)


def _stringify_keys(value: Any) -> Any:
    """YAML turns keys like `1001` or `2026-01-01` into numbers and dates; we want text."""
    if isinstance(value, dict):
        return {str(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


def load_yaml(path: Path, *, display: str | None = None) -> tuple[Located, list[Finding]]:
    """Load one YAML file. Syntax errors and repeated keys come back as findings, not exceptions."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1  # the line of the first byte that is not UTF-8
        return Located(name, None), [
            Finding(
                name, line, "error", f"the file is not UTF-8 text ({exc.reason})", "save it as UTF-8 in your editor"
            )
        ]
    except OSError as exc:
        return Located(name, None), [Finding(name, 0, "error", f"cannot read the file ({exc.strerror})")]
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character (NUL, form feed, ...) YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        return Located(name, None), [
            Finding(
                name,
                line,
                "error",
                f"the line holds an invisible control character (#x{exc.character:04x}) that YAML does not allow",
                "retype the line, or delete the character (it often comes with text copied from another program)",
            )
        ]
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        # "while scanning a quoted scalar" / "while parsing a flow sequence": the context mark is
        # where the unclosed quote or bracket opens, which is where the mistake is.
        unclosed = bool(exc.context) and ("quoted" in exc.context or "flow" in exc.context)
        mark = (exc.context_mark if unclosed else None) or exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or "the YAML cannot be read"
        hint = "check the indentation (spaces, not tabs) and that every `key: value` has a space after the colon"
        if "tab" in problem.lower() or "'\\t'" in problem:  # "found character '\t' that cannot start any token"
            hint = "replace the tab with spaces"
        elif exc.context == "while reading a value":
            hint = "write a real date like 2026-11-30 or a plain number, or put the value in quotes when it is text"
        elif exc.context and "quoted" in exc.context:
            hint = "close the quote that opens here"
        elif exc.context and "flow" in exc.context:
            hint = "close the bracket that opens here: `[` needs `]`, `{` needs `}`"
        return Located(name, None), [Finding(name, line, "error", problem, hint)]
    except RecursionError:
        return Located(name, None), [_too_deep(name)]
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    dups: list[tuple[Path_, int]] = []
    try:
        if node is not None:
            _walk(node, (), lines, dups)
        data = _stringify_keys(data)
    except RecursionError:  # lists in lists a thousand deep, or an alias that contains itself
        return Located(name, None), [_too_deep(name)]
    findings = [
        Finding(
            name,
            ln,
            "error",
            f"`{p[-1]}` appears twice in the same place",
            "keep one of them; the second would silently replace the first",
        )
        for p, ln in dups
    ]
    return Located(name, data, lines), findings


def _too_deep(name: str) -> Finding:
    return Finding(
        name,
        1,
        "error",
        "the file nests lists or mappings too deeply to be read",
        "a rule needs only a few levels of indentation: look for `[` or `{` that are never closed, "
        "or an `*alias` that refers to itself",
    )
