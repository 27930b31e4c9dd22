"""The private singer-sdk and Jinja names this mapper relies on, in one place.

Neither singer-sdk nor Jinja promises anything about these: underscore names, and Jinja's code
generator, which the sandbox subclasses to compile an expression into a plain function. A release
may rename one or change its parameters, and an override of a renamed method is silently never
called. ``PRIVATE_NAMES`` lists each one with the parameters the mapper expects;
``tests/test_compat.py`` checks every entry against the installed releases and fails naming the
entry and the code to review. The sandbox imports Jinja's internals from here only.
pyproject.toml bounds both to the minor series these checks pass on.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from jinja2 import compiler, filters, sandbox
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import _GroupTuple, make_attrgetter, sync_do_unique
from jinja2.parser import Parser
from jinja2.runtime import exported
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import missing
from singer_sdk import plugin_base
from singer_sdk.mapper_base import InlineMapper


@dataclass(frozen=True)
class PrivateName:
    """One private name of a dependency, the parameters this plugin expects, and who uses it."""

    distribution: str
    owner: Any
    name: str
    #: A method's or function's parameter names (``self`` left out); ``None`` for an attribute
    #: the owner's own code sets (``self.<name>``).
    parameters: tuple[str, ...] | None
    used_by: str

    @property
    def label(self) -> str:
        return f"{getattr(self.owner, '__qualname__', self.owner.__name__)}.{self.name}"

    def problem(self) -> str | None:
        """Why the installed release breaks this plugin's use of the name; ``None`` if it does not.

        A changed name fails here with what to review, before a run fails on it in production.
        """
        found = self._found()
        if found is None:
            return None
        return (
            f"{self.distribution} {version(self.distribution)} changed {self.label} ({found}), "
            f"which {self.used_by} relies on: adapt that code (and this list) before allowing "
            f"this {self.distribution} release in pyproject.toml"
        )

    def _found(self) -> str | None:
        if self.parameters is None:
            if inspect.ismodule(self.owner):
                present = hasattr(self.owner, self.name)
            else:
                present = f"self.{self.name}" in inspect.getsource(self.owner)
            return None if present else "no such name any more"
        try:
            member = inspect.getattr_static(self.owner, self.name)
        except AttributeError:
            return "no such name any more"
        member = getattr(member, "__func__", member)  # classmethod, staticmethod
        if not callable(member):
            return "not callable any more"
        names = tuple(inspect.signature(member).parameters)
        if inspect.isclass(self.owner) and names[:1] == ("self",):
            names = names[1:]
        expected = self.parameters
        if names[: len(expected)] != expected:
            return f"parameters ({', '.join(names)}), expected ({', '.join(expected)})"
        return None


def _jinja(owner: Any, name: str, parameters: tuple[str, ...] | None, used_by: str) -> PrivateName:
    return PrivateName("jinja2", owner, name, parameters, used_by)


#: The code generator's methods the sandbox overrides or calls (sandbox._FunctionCodeGenerator).
_GENERATOR = "the sandbox's code generator (sandbox._FunctionCodeGenerator)"

PRIVATE_NAMES = (
    PrivateName(
        "singer-sdk",
        InlineMapper,
        "_process_record_message",
        ("message_dict",),
        "SwapTransformsMapper._process_record_message (outputs written without Message objects)",
    ),
    PrivateName(
        "singer-sdk",
        InlineMapper,
        "_write_messages",
        ("messages",),
        "SwapTransformsMapper._write_messages (one write per input message)",
    ),
    PrivateName("singer-sdk", plugin_base, "_ConfigInput", None, "SwapTransformsMapper.__init__"),
    _jinja(CodeGenerator, "visit_Template", ("node", "frame"), _GENERATOR),
    _jinja(CodeGenerator, "visit_ExprStmt", ("node", "frame"), _GENERATOR),
    _jinja(CodeGenerator, "visit_Getattr", ("node", "frame"), _GENERATOR),
    _jinja(CodeGenerator, "visit_Concat", ("node", "frame"), _GENERATOR),
    _jinja(CodeGenerator, "visit_Call", ("node", "frame", "forward_caller"), _GENERATOR),
    _jinja(CodeGenerator, "__init__", ("environment", "name", "filename", "stream"), _GENERATOR),
    *(
        _jinja(CodeGenerator, name, parameters, _GENERATOR)
        for name, parameters in (
            ("writeline", ("x", "node", "extra")),
            ("pull_dependencies", ("nodes",)),
            ("indent", ()),
            ("outdent", ("step",)),
            ("enter_frame", ("frame",)),
            ("leave_frame", ("frame", "with_python_scope")),
            ("blockvisit", ("nodes", "frame")),
            ("temporary_identifier", ()),
            ("signature", ("node", "frame", "extra_kwargs")),
            ("newline", ("node", "extra")),
            ("write", ("x",)),
        )
    ),
    _jinja(Frame, "__init__", ("eval_ctx", "parent", "level"), _GENERATOR),
    _jinja(Frame, "symbols", None, _GENERATOR),
    _jinja(Frame, "toplevel", None, _GENERATOR),
    _jinja(Frame, "rootlevel", None, _GENERATOR),
    _jinja(compiler, "optimizeconst", ("f",), _GENERATOR),
    _jinja(filters, "_GroupTuple", ("grouper", "list"), "the sandbox's getattr (groupby results)"),
    _jinja(
        filters,
        "sync_do_unique",
        ("environment", "value", "case_sensitive", "attribute"),
        "the sandbox's unique filter",
    ),
    _jinja(
        filters,
        "make_attrgetter",
        ("environment", "attribute"),
        "the guarded filters (guarded.py) and helpers.py",
    ),
    _jinja(Parser, "__init__", ("environment", "source"), "sandbox.parse_expression"),
    _jinja(sandbox, "SandboxedFormatter", ("env",), "guarded.BudgetFormatter"),
    _jinja(SandboxedFormatter, "format_field", ("value", "format_spec"), "guarded.BudgetFormatter"),
    _jinja(sandbox, "SandboxedEscapeFormatter", ("env",), "guarded.BudgetEscapeFormatter"),
)

__all__ = [
    "PRIVATE_NAMES",
    "CodeGenerator",
    "Frame",
    "Parser",
    "PrivateName",
    "SandboxedEscapeFormatter",
    "SandboxedFormatter",
    "_GroupTuple",
    "exported",
    "make_attrgetter",
    "missing",
    "optimizeconst",
    "sync_do_unique",
]
