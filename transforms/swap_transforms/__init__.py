"""Singer inline mapper applying YAML/Jinja mapping files."""

#: The release; pyproject.toml reads it from here (hatch), `--about` shows it.
__version__ = "0.2.0.dev0"
