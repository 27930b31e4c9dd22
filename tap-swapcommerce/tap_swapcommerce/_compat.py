"""The private singer-sdk names this tap relies on, in one place.

singer-sdk promises nothing about underscore names: a minor release may rename one or change its
parameters, and an override of a renamed method is silently never called. ``PRIVATE_NAMES`` lists
each one with the parameters the tap expects; ``tests/test_compat.py`` checks every entry against
the installed release and fails naming the entry and the code to review. pyproject.toml pins
singer-sdk to the minor series these checks pass on.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from singer_sdk.streams import Stream


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


PRIVATE_NAMES = (
    PrivateName(
        "singer-sdk",
        Stream,
        "_write_state_message",
        (),
        "ReturnsStream.finalize_state_progress_markers (the children's final bookmarks)",
    ),
    PrivateName(
        "singer-sdk",
        Stream,
        "_write_schema_message",
        (),
        "IntegrationExceptionsStream (its SCHEMA before the first set-aside record)",
    ),
    PrivateName(
        "singer-sdk",
        Stream,
        "_write_record_message",
        ("record",),
        "IntegrationExceptionsStream (records written while another stream syncs)",
    ),
)
