"""Metrics: retrieval and identification in feature spaces, linear probes; image metrics come with the evaluator."""
