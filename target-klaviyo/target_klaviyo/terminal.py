"""What reaches a terminal or a log from the data: control characters escaped.

A value from Swap (a reason, a metric name, a record key) can hold ANSI escapes or line breaks.
Printed raw, it could recolour or clear an operator's terminal, or forge a log line that a
reader (``run outcome: ...``) would believe. Every printed summary goes through
:func:`escape_controls`, and the target's log handlers through :class:`EscapeControls`.
"""

from __future__ import annotations

import logging
import re

#: Below 0x20 except tab, DEL, the C1 range, and Unicode's line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """Control characters written as Python writes them (ESC as ``x1b`` after a backslash)."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def escape_lines(text: str) -> str:
    """Each line of a multi-line summary escaped, the line breaks between them kept."""
    return "\n".join(escape_controls(line) for line in text.split("\n"))


class EscapeControls(logging.Filter):
    """Formats each record's message once and escapes its control characters.

    Installed on handlers, so that it covers every logger that reaches them (the SDK's, the
    target's modules'); the traceback of an exception stays as Python prints it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


def escape_log_handlers(logger: logging.Logger | None = None) -> None:
    """Add :class:`EscapeControls` to the handlers of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, EscapeControls) for f in handler.filters):
            handler.addFilter(EscapeControls())
