"""The `fm` command: the group in main, one module per command group."""

from fm._moved import forward_old_names

__getattr__ = forward_old_names(__name__)  # fm.cli was a module until 0.1; the entry point is fm.cli.fm_cli:main
