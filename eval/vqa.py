"""`python -m eval.vqa` is `fm eval vqa` (fm.eval_vqa; options: `python -m eval.vqa --help`)."""

from fm.cli_eval import vqa

if __name__ == "__main__":
    vqa(prog_name="python -m eval.vqa")
