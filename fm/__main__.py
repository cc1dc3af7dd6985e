"""`python -m fm`: the fm command, so that `torchrun -m fm report --manifest ...` can start it."""

from fm.cli.fm_cli import main

main()
