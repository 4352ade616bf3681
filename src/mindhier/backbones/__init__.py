"""Frozen pretrained image networks that the package can load offline."""
