"""`python -m eval.segmentation` is `fm eval segmentation` (fm.evaluate.segmentation; options: `python -m eval.segmentation --help`)."""

from fm.cli.evaluate import segmentation

if __name__ == "__main__":
    segmentation(prog_name="python -m eval.segmentation")
