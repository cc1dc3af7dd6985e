"""`python -m fm.cli` is `fm` (as `python -m fm` is)."""

from fm.cli.fm_cli import main

if __name__ == "__main__":
    main()
