"""Singer target for Klaviyo's bulk APIs."""

from target_klaviyo import startup  # noqa: F401 - first: singer_sdk without numpy

#: The release; pyproject.toml reads it from here (hatch), `--about` shows it.
__version__ = "0.2.0.dev0"
