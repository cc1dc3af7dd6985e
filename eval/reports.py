"""`python -m eval.reports` is `fm eval reports` (fm.evaluate.reports; options: `python -m eval.reports --help`)."""

from fm.cli.evaluate import reports

if __name__ == "__main__":
    reports(prog_name="python -m eval.reports")
