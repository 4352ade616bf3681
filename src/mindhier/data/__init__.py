"""Data: stimulus sources, the synthetic brain, and the reader for NSD in MindEye2's layout."""
