"""`python -m fm`: the fm command, so that `torchrun -m fm report --manifest ...` can start it."""

from fm.cli.main import main

main()
