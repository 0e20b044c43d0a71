"""The paper's claim in miniature: does pre-training on formula-driven images (contours, and
FractalDB behind `--fractal`) let a small ViT learn digits from 10 or 50 labelled images per
class, against the same ViT from scratch and a small CNN from scratch?

    python -m experiments.formula_pretraining --out runs/paper [--fractal] [--long] [--sweep]

Modules: `settings` (the options), `digits` (test/validation/shot splits), `nets` (the ViT and
the CNN), `steps` (a fixed number of optimizer steps on in-memory arrays), `jobs` (one
pre-training or fine-tuning run, resumable), `plan` (which runs, in what order, on both cores),
`report` (tables, statistics), `attention` (where the models look), `__main__` (the command).
See docs/paper-experiment.md.
"""
