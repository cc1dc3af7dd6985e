"""The README's set-up commands are what CI runs and what a new user types."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_two_commands_and_ci_runs_the_second():
    commands = setup_commands()
    assert len(commands) == 2
    assert commands[0].endswith("fm report --example --out report")
    ci_lines = [
        ln
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln and not ln.startswith(("#", "set ", "cd ", "export FM_REQUIRE_SHARED="))
    ]
    assert ci_lines == [commands[1]]


def test_setup_never_resolves_an_unpinned_torch():
    for command in setup_commands():
        assert "torch==2.14.1 torchvision==0.29.1" in command
