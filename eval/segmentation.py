"""`python -m eval.segmentation` is `fm eval segmentation` (fm.eval_segmentation; options: `python -m eval.segmentation --help`)."""

from fm.cli_eval import segmentation

if __name__ == "__main__":
    segmentation(prog_name="python -m eval.segmentation")
