"""Samplers and pipelines: scale-wise sampling with classifier-free guidance, brain-only selection."""

# brain inputs a pipeline samples together by default: the same tokens as one at a time (every input draws from its
# own random stream), pixels up to float rounding; bounded so the batch's activations stay small on a laptop
PIPELINE_BATCH = 25
