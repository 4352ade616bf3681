"""Folder names inside a pipeline run (what `mindhier demo` writes and `mindhier report` reads)."""

DATA = "data"
ENCODER = "encoder"
TOKENIZER = "tokenizer"
GENERATORS = "generators"  # one folder per routing
DIFFUSION = "diffusion"  # the diffusion baseline's run folder, and its reconstruction set
RECONS = "recons"  # one folder per reconstruction set
EVAL = "eval"  # one folder per reconstruction set: metrics.json + per_image.csv
STAGE_TIMES = "stage_times.json"
CONTROL = "shuffled_brain"  # brain inputs permuted across test images
CEILING = "tokenizer_ceiling"  # the true test images through the tokenizer
REPORT = "report"
