"""Meltano's own command line, with one upstream bug worked around: decimals set by variable.

Meltano 4.4 parses a ``kind: decimal`` setting given by an environment variable (or ``.env``)
into a :class:`~decimal.Decimal`, then writes the plugin's config file with a JSON encoder that
knows dates only, so ``TARGET_KLAVIYO_BACKFILL_AFTER_HOURS=0.5 meltano run ...`` stops with
"Object of type Decimal is not JSON serializable" before any plugin starts. Every number setting
of this project's plugins is a decimal, and the brands runner passes a brand's overrides as
variables, so the launcher runs Meltano through this module: the encoder also writes a decimal
as a JSON number (an integer when it is whole). ``tests/launcher/test_meltano_main.py`` fails
the day Meltano fixes this upstream or moves the encoder, so the shim can go.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from meltano.core.setting_definition import SettingValueJSONEncoder

_upstream_default = SettingValueJSONEncoder.default


def _default(self: SettingValueJSONEncoder, o: Any) -> Any:
    if isinstance(o, Decimal):
        return int(o) if o == o.to_integral_value() else float(o)
    return _upstream_default(self, o)


def main() -> None:
    SettingValueJSONEncoder.default = _default  # type: ignore[method-assign]
    from meltano.cli import main as meltano_cli  # noqa: PLC0415 - after the encoder is fixed

    meltano_cli()


if __name__ == "__main__":
    main()
