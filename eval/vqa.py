"""`python -m eval.vqa` is `fm eval vqa` (fm.evaluate.vqa; options: `python -m eval.vqa --help`)."""

from fm.cli.evaluate import vqa

if __name__ == "__main__":
    vqa(prog_name="python -m eval.vqa")
