"""Singer inline mapper applying YAML/Jinja mapping files."""
