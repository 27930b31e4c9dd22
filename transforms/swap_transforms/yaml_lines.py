"""YAML loading that remembers where every value came from.

PyYAML's plain loaders drop line numbers and silently let a repeated key win; analysts need both
(an error pointing at line 42, and a warning that `Items:` appears twice). This loader composes
the node tree (which carries start marks), records the line of every path in it and rejects
duplicate keys, then builds the data with PyYAML's own safe constructor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from swap_transforms.errors import MappingFileError, Problem

PathKey = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class YamlDocument:
    """A loaded YAML file: its data and the line of each path (key or list item) in it."""

    path: str
    data: Any
    lines: dict[PathKey, int] = field(default_factory=dict)
    text_lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int | None:
        """Line of the entry at `path`, or of its nearest ancestor that has one (1-based)."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def text_line(self, path: PathKey, line_in_text: int = 1) -> int | None:
        """Line of line `line_in_text` of the text at `path` (block scalars start below the key)."""
        start = self.text_lines.get(path)
        if start is None:
            return self.line(path)
        return start + max(line_in_text, 1) - 1


def load_yaml(path: Path, shown_as: str) -> YamlDocument:
    """Load one YAML file; any failure is a `MappingFileError` naming `shown_as` and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingFileError([Problem(shown_as, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise MappingFileError([Problem(shown_as, None, "", f"cannot read: {reason}")]) from None
    document = YamlDocument(path=shown_as, data=None)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            problems: list[Problem] = []
            document.lines[()] = node.start_mark.line + 1
            _index(node, (), document, problems)
            if problems:
                raise MappingFileError(problems)
            document.data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else None
        what = " ".join(part for part in (error.context, error.problem) if part)
        raise MappingFileError(
            [Problem(shown_as, line, "", f"YAML syntax error: {what}")]
        ) from None
    except yaml.YAMLError as error:
        raise MappingFileError([Problem(shown_as, None, "", f"YAML error: {error}")]) from None
    finally:
        loader.dispose()
    return document


def _index_merged(node: yaml.MappingNode, path: PathKey, doc: YamlDocument, own: set[str]) -> None:
    """Keys a mapping takes from `<<: *anchor`: at their line in the anchor (where to fix them)."""
    for key_node, value_node in node.value:
        if key_node.tag != _MERGE_TAG:
            continue
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                continue
            for merged_key, merged_value in source.value:
                if not isinstance(merged_key, yaml.ScalarNode) or merged_key.value in own:
                    continue
                own.add(merged_key.value)
                doc.lines[(*path, merged_key.value)] = merged_key.start_mark.line + 1
                _index(merged_value, (*path, merged_key.value), doc, [])


def _index(node: yaml.Node, path: PathKey, doc: YamlDocument, problems: list[Problem]) -> None:
    if isinstance(node, yaml.ScalarNode):
        # A block scalar's text (| or >) starts on the line after its indicator.
        doc.text_lines[path] = node.start_mark.line + 1 + (1 if node.style in ("|", ">") else 0)
    elif isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                problems.append(
                    Problem(
                        doc.path, line, "", f"duplicate key '{key}' (first at line {seen[key]})"
                    )
                )
                continue
            seen[key] = line
            doc.lines[(*path, key)] = line
            _index(value_node, (*path, key), doc, problems)
        _index_merged(node, path, doc, set(seen))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            doc.lines[(*path, index)] = item.start_mark.line + 1
            _index(item, (*path, index), doc, problems)
