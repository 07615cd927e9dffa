"""The toolkit's one YAML reader: ``yaml.safe_load`` with caps, for every YAML it reads (training configs, a run
folder's ``config.yaml``, ``--metric-option`` values).

Before anything is built: the text is at most :data:`MAX_YAML_CHARS` characters, nests at most
:data:`MAX_YAML_DEPTH` levels (also through aliases; a node that contains itself is refused) and expands to at
most :data:`MAX_YAML_NODES` values with every alias counted at each use (a ~700-byte alias bomb expands to
billions). Every problem is one :class:`~clipscore_sr.errors.ConfigError` line naming ``where``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ConfigError

#: a YAML document may expand (aliases counted at every use) to at most this many nodes
MAX_YAML_NODES = 100_000
#: nesting levels of sequences and mappings (aliases expanded)
MAX_YAML_DEPTH = 100
#: characters of YAML text (and bytes of a YAML file)
MAX_YAML_CHARS = 4 * 2**20


def _children(node: Any) -> list[Any]:
    value = node.value
    if not isinstance(value, list):
        return []
    return [child for item in value for child in (item if isinstance(item, tuple) else (item,))]


def _expanded(root: Any) -> tuple[int, int]:
    """(nodes, depth) of a composed YAML document with every alias expanded, without recursion; stops early
    past :data:`MAX_YAML_NODES` or :data:`MAX_YAML_DEPTH` (a node inside itself counts as too deep)."""
    if root is None:
        return 0, 0
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            if size[key] > MAX_YAML_NODES or height[key] > MAX_YAML_DEPTH:
                return size[key], height[key]
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                return 0, MAX_YAML_DEPTH + 1
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)], height[id(root)]


def load_yaml(text: str, where: str, *, invalid: str = "invalid YAML") -> Any:
    """``yaml.safe_load(text)`` within the caps; any problem is one ``ConfigError`` line
    ``"{where}: {invalid} at line N (problem)"`` (or names the cap that was passed)."""
    import yaml

    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"{where}: YAML text longer than {MAX_YAML_CHARS:,} characters")
    too_deep = ConfigError(f"{where}: YAML nests deeper than {MAX_YAML_DEPTH} levels (aliases expanded)")
    try:
        depth = 0  # the event stream is flat: count nesting before composing (which recurses per level)
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise too_deep
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        n_nodes, depth = _expanded(node)
        if n_nodes > MAX_YAML_NODES:
            raise ConfigError(f"{where}: YAML expands to more than {MAX_YAML_NODES:,} values through aliases "
                              "(&anchor / *alias); write the values out")
        if depth > MAX_YAML_DEPTH:
            raise too_deep
        if node is None:
            return None
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: {invalid}{at} ({problem})") from None
    except RecursionError:
        raise too_deep from None


def read_yaml(path: str | os.PathLike) -> Any:
    """:func:`load_yaml` of a UTF-8 file (at most :data:`MAX_YAML_CHARS` bytes), messages naming ``path``."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_CHARS:
            raise ConfigError(f"{path}: YAML file larger than {MAX_YAML_CHARS:,} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return load_yaml(text, str(path))
