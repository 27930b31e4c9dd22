"""``swap-meltano``: run any Meltano command of this project beside any other, safely.

Meltano 4.4 writes each plugin's run files (config, catalog, ``state.json``) under
``.meltano/run/<plugin>/``, shared by every command in the project, so a ``meltano run`` and a
``meltano invoke`` of the same plugin started together delete or rewrite each other's files. This
launcher takes the same arguments as ``meltano`` and gives each command a system directory of its
own (``MELTANO_SYS_DIR_ROOT``) whose plugin directories are links to the project's, with the
system database pinned to the project's; a pipeline run first takes an atomic claim on its state
id, so a second run of the same pipeline ends at once with ``run outcome: already_running``.
"""

__version__ = "0.2.0.dev0"
