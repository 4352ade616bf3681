"""`mindhier demo`: the main job on the embedded default world, end to end, and its studies.

The demo's pipeline lives in `mindhier.pipeline` (`demo_pipeline.run_demo`), where `mindhier bench decoders`
reuses it too; `adaptation.py` is the adaptation study (`mindhier eval adaptation`).
"""

from mindhier.pipeline.demo_pipeline import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
