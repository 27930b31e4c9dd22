"""Singer tap for the Swap Commerce Returns API."""

#: The release; pyproject.toml reads it from here (hatch), `--about` shows it.
__version__ = "0.2.0.dev0"
