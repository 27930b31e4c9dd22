"""What a Meltano command line will touch, read from ``meltano.yml`` the way Meltano reads it.

The launcher must know, before Meltano starts (about 1.6 s of imports), which state ids a command
writes, so that it can claim them first. Meltano derives a pipeline's state id as
``<environment>:<extractor>-to-<loader>[:<suffix>]`` (``generate_state_id`` in
``meltano/core/block/extract_load.py``); the same rule is applied here to the command's blocks, a
job's tasks or a schedule's job. Only the command-line shapes that run pipelines are parsed
(``run``, ``el``, ``elt``, ``schedule run``); every other command claims nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

#: Meltano's global options that take a value (``meltano --environment prod run ...``).
GLOBAL_VALUE_OPTIONS = frozenset(
    {"--log-level", "--log-format", "--log-config", "--environment", "--cwd", "--env-file"}
)
#: ``meltano run`` options that take a value; every other option is a flag.
RUN_VALUE_OPTIONS = frozenset({"--state-id-suffix", "--state-strategy", "--run-id", "--timeout"})
#: ``meltano el``/``elt`` options that take a value.
EL_VALUE_OPTIONS = frozenset(
    {"--state-id", "--transform", "--catalog", "--state", "--select", "--exclude", "--run-id"}
)
#: Plugin kinds whose installations live under the system dir (Meltano's ``PluginType``).
PLUGIN_TYPES = (
    "extractors",
    "loaders",
    "transforms",
    "orchestrators",
    "transformers",
    "files",
    "utilities",
    "mappers",
    "mappings",
)
STATE_ID_DELIMITER = ":"


@dataclass(frozen=True)
class CommandLine:
    """A ``meltano`` argument list split into global options and the command's own words."""

    options: dict[str, str | bool]
    words: list[str]

    @classmethod
    def parse(cls, argv: Sequence[str]) -> CommandLine:
        options, rest = _split_options(list(argv), GLOBAL_VALUE_OPTIONS)
        return cls(options, rest)


@dataclass
class MeltanoProject:
    """A project's ``meltano.yml`` (with its ``include_paths``) and ``.env``."""

    root: Path
    config: dict[str, Any]
    dotenv: dict[str, str] = field(default_factory=dict)

    @classmethod
    def find(cls, start: Path) -> MeltanoProject | None:
        """The project whose ``meltano.yml`` is in ``start`` or one of its parents."""
        for folder in (start, *start.parents):
            if (folder / "meltano.yml").is_file():
                return cls.load(folder)
        return None

    @classmethod
    def load(cls, root: Path, env_file: str | None = None) -> MeltanoProject:
        config = _read_yaml(root / "meltano.yml")
        for pattern in config.get("include_paths") or []:
            for path in sorted(root.glob(pattern)):
                _merge_included(config, _read_yaml(path))
        dotenv_path = root / (env_file or ".env")
        values = dotenv_values(dotenv_path) if dotenv_path.is_file() else {}
        return cls(root, config, {k: v for k, v in values.items() if v is not None})

    def setting(self, env: Mapping[str, str], name: str) -> str | None:
        """A Meltano setting from the environment, then ``.env``, then ``meltano.yml``."""
        variable = "MELTANO_" + name.upper()
        value = env.get(variable) or self.dotenv.get(variable) or self.config.get(name)
        return None if value is None else str(value)

    def environment(self, command: CommandLine, env: Mapping[str, str]) -> str | None:
        """The active environment, with Meltano's precedence (``cli.py``'s ``_resolve_env``)."""
        chosen = command.options.get("--environment")
        name = chosen if isinstance(chosen, str) else self.setting(env, "environment")
        if command.options.get("--no-environment") or (name and name.lower() == "null"):
            return None
        return name or self.config.get("default_environment")

    def plugin_names(self, kind: str) -> set[str]:
        plugins = (self.config.get("plugins") or {}).get(kind) or []
        names = {p["name"] for p in plugins}
        if kind == "mappers":
            names |= {m["name"] for p in plugins for m in p.get("mappings") or []}
        return names

    def job_blocks(self, name: str) -> list[list[str]] | None:
        """A job's tasks, each split into block names; None when no job has that name."""
        for job in self.config.get("jobs") or []:
            if job.get("name") == name:
                tasks = job.get("tasks") or []
                tasks = [tasks] if isinstance(tasks, str) else tasks
                return [_task_words(task) for task in tasks]
        return None

    def schedule(self, name: str) -> dict[str, Any] | None:
        for schedule in self.config.get("schedules") or []:
            if schedule.get("name") == name:
                return dict(schedule)
        return None

    def environment_suffix(self, environment: str | None) -> str | None:
        for entry in self.config.get("environments") or []:
            if entry.get("name") == environment:
                suffix = entry.get("state_id_suffix")
                return None if suffix is None else str(suffix)
        return None


def pipeline_state_ids(
    project: MeltanoProject, command: CommandLine, env: Mapping[str, str]
) -> list[str]:
    """The state ids the command will write, sorted; empty for a command that runs no pipeline."""
    environment = project.environment(command, env)
    if environment is None:
        return []  # without an environment Meltano keeps no state, and neither is claimed here
    words = command.words
    if words[:1] == ["run"]:
        ids = _run_state_ids(project, words[1:], environment, env)
    elif words[:1] in (["el"], ["elt"]):
        ids = _el_state_ids(project, words[1:], environment)
    elif words[:2] == ["schedule", "run"] and len(words) > 2:
        ids = _schedule_state_ids(project, words[2], words[3:], environment, env)
    else:
        ids = []
    return sorted(set(ids))


def _run_state_ids(
    project: MeltanoProject, args: list[str], environment: str, env: Mapping[str, str]
) -> list[str]:
    options, blocks = _split_options(args, RUN_VALUE_OPTIONS)
    suffix = options.get("--state-id-suffix")
    if not isinstance(suffix, str):
        suffix = env.get("MELTANO_RUN_STATE_ID_SUFFIX") or project.environment_suffix(environment)
    return [
        _state_id(environment, extractor, loader, suffix)
        for extractor, loader in _pairs(project, _expand_jobs(project, blocks))
    ]


def _el_state_ids(project: MeltanoProject, args: list[str], environment: str) -> list[str]:
    options, names = _split_options(args, EL_VALUE_OPTIONS)
    explicit = options.get("--state-id")
    if isinstance(explicit, str):
        return [explicit]
    if len(names) < 2:
        return []
    return [_state_id(environment, names[0], names[1], project.environment_suffix(environment))]


def _schedule_state_ids(
    project: MeltanoProject,
    name: str,
    extra: list[str],
    environment: str,
    env: Mapping[str, str],
) -> list[str]:
    schedule = project.schedule(name)
    if schedule is None:
        return []
    if schedule.get("job"):
        return _run_state_ids(project, [*extra, str(schedule["job"])], environment, env)
    if schedule.get("extractor") and schedule.get("loader"):
        return _el_state_ids(
            project, [str(schedule["extractor"]), str(schedule["loader"]), *extra], environment
        )
    return []


def _expand_jobs(project: MeltanoProject, blocks: list[str]) -> Iterator[str]:
    for block in blocks:
        tasks = project.job_blocks(block)
        if tasks is None:
            yield block
        else:
            for task in tasks:
                yield from _expand_jobs(project, task)


def _pairs(project: MeltanoProject, blocks: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Each extractor with the loader that ends its block set, as Meltano's parser pairs them."""
    extractors = project.plugin_names("extractors")
    loaders = project.plugin_names("loaders")
    current: str | None = None
    for block in blocks:
        name = block.split(":", 1)[0]
        if name in extractors:
            current = name
        elif name in loaders and current is not None:
            yield current, name
            current = None


def _state_id(environment: str, extractor: str, loader: str, suffix: str | None) -> str:
    parts = [environment, f"{extractor}-to-{loader}", suffix]
    return STATE_ID_DELIMITER.join(p for p in parts if p)


def _split_options(
    args: list[str], value_options: frozenset[str]
) -> tuple[dict[str, str | bool], list[str]]:
    """Leading options (``--name value``, ``--name=value`` or flags) and the words after them.

    Options of a subcommand may follow its positional words (``meltano run job --force``), so
    options are collected anywhere in ``args``; for the global options, parsing stops at the
    first word, which names the command.
    """
    options: dict[str, str | bool] = {}
    words: list[str] = []
    is_global = "--environment" in value_options
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            words.extend(args[index + 1 :])
            break
        if arg.startswith("--") and not (is_global and words):
            name, has_value, value = arg.partition("=")
            name = name.replace("_", "-")  # Meltano accepts --state_id_suffix too
            if has_value:
                options[name] = value
            elif name in value_options and index + 1 < len(args):
                options[name] = args[index + 1]
                index += 1
            else:
                options[name] = True
        elif arg.startswith("-") and len(arg) > 1 and not (is_global and words):
            options[arg] = True
        else:
            words.append(arg)
        index += 1
    return options, words


def _task_words(task: str | list[str]) -> list[str]:
    if isinstance(task, str):
        return task.split()
    return [word for part in task for word in str(part).split()]


def _read_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text()) or {}
    return loaded if isinstance(loaded, dict) else {}


def _merge_included(config: dict[str, Any], included: dict[str, Any]) -> None:
    """``include_paths`` files add plugins, jobs, schedules and environments."""
    for key in ("jobs", "schedules", "environments"):
        config[key] = [*(config.get(key) or []), *(included.get(key) or [])]
    plugins = config.setdefault("plugins", {})
    for kind, entries in (included.get("plugins") or {}).items():
        plugins[kind] = [*(plugins.get(kind) or []), *entries]


def expand_variables(value: str, env: Mapping[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` replaced from ``env`` (as Meltano expands ``database_uri``)."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: env.get(m.group(1) or m.group(2), ""), value)


def sys_dir_default(project: MeltanoProject, env: Mapping[str, str]) -> Path:
    """The system dir the command would have had without the launcher."""
    return Path(env.get("MELTANO_SYS_DIR_ROOT") or project.root / ".meltano")
