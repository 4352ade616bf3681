"""Samplers and pipelines: scale-wise sampling with classifier-free guidance, brain-only selection."""
