"""Linear-probe evaluation of frozen encoders side by side: `python -m eval.linear_probe` is
`fm probe` (fm.probe.run; options: `python -m eval.linear_probe --help`).

    python -m eval.linear_probe cohort.csv --encoder segmenter:synth-unet --out probe/
"""

from fm.cli.probe import probe

if __name__ == "__main__":
    probe(prog_name="python -m eval.linear_probe")
