"""Reading the analysts' YAML test and contract files, with the line of every entry.

Test files hold records as Swap sends them and values as Klaviyo should get them, so two of
PyYAML's conveniences would change the data under test: an unquoted timestamp becomes a Python
datetime (Swap sends text), and `80.5` becomes a binary float (a Singer mapper gets Decimal).
This loader keeps timestamps as text and reads numbers with a fraction as Decimal; it also
rejects duplicate keys and remembers lines, so a problem points at the line to fix.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from swap_transforms.errors import MappingFileError, Problem

PathKey = tuple[str | int, ...]
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader without implicit timestamps, with Decimal for numbers with a fraction."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    value = loader.construct_yaml_float(node)
    if math.isnan(value) or math.isinf(value):
        return value  # .nan / .inf: no Decimal a JSON record could hold
    return Decimal(str(node.value).replace("_", ""))


_Loader.add_constructor("tag:yaml.org,2002:float", _decimal)


class Document:
    """A loaded YAML file: its data and the line of each key or list item in it."""

    def __init__(self, path: str, data: Any, lines: dict[PathKey, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    def line(self, path: PathKey) -> int | None:
        """Line of the entry at `path`, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def problem(self, path: PathKey, message: str) -> Problem:
        return Problem(self.path, self.line(path), "", message)


def load(path: Path, shown_as: str) -> Document:
    """Load one YAML file; any failure is a `MappingFileError` naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingFileError([Problem(shown_as, None, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError):
        raise MappingFileError([Problem(shown_as, None, "", "cannot read the file")]) from None
    loader = _Loader(text)
    lines: dict[PathKey, int] = {}
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        data = None
        if node is not None:
            lines[()] = node.start_mark.line + 1
            _index(node, (), lines, problems, shown_as)
            data = loader.construct_document(node)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        what = " ".join(part for part in (error.context, error.problem) if part)
        line = None if mark is None else mark.line + 1
        raise MappingFileError(
            [Problem(shown_as, line, "", f"YAML syntax error: {what}")]
        ) from None
    finally:
        loader.dispose()
    if problems:
        raise MappingFileError(problems)
    return Document(shown_as, data, lines)


def _index(
    node: yaml.Node, path: PathKey, lines: dict[PathKey, int], problems: list[Problem], shown: str
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key, line = str(key_node.value), key_node.start_mark.line + 1
            if key in seen:
                message = f"duplicate key '{key}' (first at line {seen[key]})"
                problems.append(Problem(shown, line, "", message))
                continue
            seen[key] = line
            lines[(*path, key)] = line
            _index(value_node, (*path, key), lines, problems, shown)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index(item, (*path, index), lines, problems, shown)


def _validator(name: str) -> jsonschema.protocols.Validator:
    text = resources.files("swap_transforms").joinpath(name).read_text(encoding="utf-8")
    schema = json.loads(text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def check_structure(document: Document, schema_name: str) -> None:
    """Raise a `MappingFileError` with every place where the file breaks its JSON Schema."""
    validator = _validator(schema_name)
    problems = []
    for error in sorted(validator.iter_errors(document.data), key=lambda e: list(e.path)):
        where = ".".join(str(part) for part in error.absolute_path)
        message = _message(error)
        problems.append(
            document.problem(tuple(error.absolute_path), f"{where or 'file'}: {message}")
        )
    if problems:
        raise MappingFileError(problems)


def _message(error: jsonschema.ValidationError) -> str:
    """The validator's message, without quoting a long value back (it may be a whole record)."""
    if error.validator == "additionalProperties":
        return error.message
    if error.validator in ("oneOf", "anyOf"):
        options_given = error.validator_value if isinstance(error.validator_value, list) else []
        wanted = [sorted(sub.get("required", [])) for sub in options_given]
        options = " or ".join("/".join(names) for names in wanted if names)
        count = "exactly" if error.validator == "oneOf" else "at least"
        return f"needs {count} one of: {options}" if options else "matches no allowed form"
    return re.sub(r"^\{.*\} ", "", error.message) if len(error.message) > 120 else error.message
