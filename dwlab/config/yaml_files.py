"""Reading YAML files that people and programs write: bounded before parsing, and every
problem a ConfigError naming the file (and the key, where there is one).

A file is refused, without echoing its content, when it is larger than :data:`MAX_BYTES`,
not UTF-8 text, nested deeper than :data:`MAX_DEPTH`, expands (through aliases) to more
than :data:`MAX_VALUES` values, or repeats a key in one mapping (YAML would silently keep
the last one). Then it is read with the safe loader: plain data only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dwlab.core.errors import ConfigError

MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_VALUES = 200_000
_MERGE = "tag:yaml.org,2002:merge"


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, refusing nesting deeper than MAX_DEPTH while it composes."""

    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file, self.depth = file, 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(f"nested deeper than {MAX_DEPTH} levels (line {line})",
                                  file=self.file)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _check_keys(root: yaml.Node, file: str) -> None:
    """Refuse a key repeated in one mapping, and more than MAX_VALUES values in all."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    count = 0
    while stack:
        node, key = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise ConfigError(f"more than {MAX_VALUES} values (counting what aliases repeat)",
                              file=file)
        if isinstance(node, yaml.SequenceNode):
            stack.extend((v, f"{key}[{i}]") for i, v in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            lines: dict[tuple[str, str], int] = {}
            for k, v in node.value:
                if k.tag == _MERGE or not isinstance(k, yaml.ScalarNode):
                    stack.append((v, key))
                    continue
                child = f"{key}.{k.value}" if key else str(k.value)
                line, ident = k.start_mark.line + 1, (k.tag, k.value)
                if ident in lines:
                    raise ConfigError(f"duplicate key (lines {lines[ident]} and {line}); "
                                      "each key may appear once", file=file, key=child)
                lines[ident] = line
                stack.append((v, child))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint and where, without the snippet of the file it quotes."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.context + ', ' if exc.context else ''}{exc.problem}{where}"
    return type(exc).__name__


def read_text(path: str | Path, max_bytes: int = MAX_BYTES) -> str:
    """The UTF-8 text of a regular file of at most ``max_bytes`` (checked before reading)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("file not found", file=str(path))
    if not path.is_file():
        raise ConfigError("not a regular file", file=str(path))
    size = path.stat().st_size
    if size > max_bytes:
        raise ConfigError(f"file of {size} bytes is larger than the {max_bytes} allowed",
                          file=str(path))
    with path.open("rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(f"file is larger than the {max_bytes} bytes allowed", file=str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start})", file=str(path)) from None


def read_yaml(path: str | Path, max_bytes: int = MAX_BYTES) -> Any:
    """The plain data of a YAML file, or one ConfigError naming the file (and key)."""
    file = str(path)
    loader = _BoundedLoader(read_text(path, max_bytes), file)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_keys(node, file)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {_yaml_problem(exc)}", file=file) from None
    finally:
        loader.dispose()
