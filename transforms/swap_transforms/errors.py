"""Errors of the mapping engine, shaped for the people who read them.

Start-up errors go to analysts fixing a YAML file, so each names the file, the line and the rule
or field at fault, and they are collected (all problems at once) instead of one per run.
Run-time errors become exception records, so they carry where in the mapping they happened and a
message that never quotes record values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a mapping file, at a place an analyst can jump to."""

    file: str
    line: int | None
    where: str
    message: str

    def __str__(self) -> str:
        place = self.file if self.line is None else f"{self.file}:{self.line}"
        return (
            f"{place}: {self.where}: {self.message}" if self.where else f"{place}: {self.message}"
        )


class MappingFileError(Exception):
    """The mapping files cannot be used; nothing may run until every problem is fixed."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


class EvaluationError(Exception):
    """A mapping expression failed on a record: where (field path, item) and why, no values."""

    def __init__(self, where: str, cause: BaseException) -> None:
        self.where = where
        self.cause = cause
        super().__init__(f"{where}: {describe(cause)}")


def describe(error: BaseException) -> str:
    """The message of an error raised by a mapping expression, nested locations joined."""
    if isinstance(error, EvaluationError):
        return str(error)
    text = str(error).strip() or type(error).__name__
    if type(error).__name__ not in text:
        text = f"{text} ({type(error).__name__})"
    return text
