"""The private singer-sdk names this target relies on, in one place.

singer-sdk promises nothing about underscore names: a minor release may rename one or change its
parameters, and an override of a renamed method is silently never called (a STATE written before
its events were sent, a signal handled the SDK's way). ``PRIVATE_NAMES`` lists each one with the
parameters the target expects; ``tests/test_compat.py`` checks every entry against the installed
release and fails naming the entry and the code to review. Private functions are imported from
here only. pyproject.toml pins singer-sdk to the minor series these checks pass on.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from singer_sdk import Sink, Target
from singer_sdk.configuration import _dict_config
from singer_sdk.configuration._dict_config import parse_environment_config


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
        Target,
        "_write_state_message",
        ("state",),
        "TargetKlaviyo._write_state_message (no STATE before the events are sent)",
    ),
    PrivateName(
        "singer-sdk",
        Target,
        "_handle_termination",
        ("signum", "frame"),
        "TargetKlaviyo._handle_termination (SIGTERM/SIGINT end the run `interrupted`)",
    ),
    PrivateName(
        "singer-sdk",
        Target,
        "_sinks_active",
        None,
        "TargetKlaviyo.drain_stream (the profile sink lets events go first)",
    ),
    PrivateName(
        "singer-sdk",
        Sink,
        "_parse_timestamps_in_record",
        ("record", "schema", "treatment"),
        "KlaviyoSink._parse_timestamps_in_record (timestamps kept as the source wrote them)",
    ),
    PrivateName(
        "singer-sdk",
        _dict_config,
        "parse_environment_config",
        ("config_schema", "prefix"),
        "klaviyo-ops (the target's settings from TARGET_KLAVIYO_* variables)",
    ),
)

__all__ = ["PRIVATE_NAMES", "PrivateName", "parse_environment_config"]
