"""Top-level networks: brain encoder (Stage 1); tokenizer and generator come with Stage 2."""
