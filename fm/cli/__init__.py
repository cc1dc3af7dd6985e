"""The `fm` command: the group in fm_cli (the entry point fm.cli.fm_cli:main), one module per
command group."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(__name__)  # fm.cli was a module before the subpackages: `from fm.cli import main`
