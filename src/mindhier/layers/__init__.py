"""Network primitives with plain arguments (no configs): attention, transformer blocks."""
