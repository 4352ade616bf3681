"""Training loops, one explicit loop per stage, plus shared helpers (sampling, optimisation, distribution)."""
