"""The synthetic brain: a voxel-wise encoding model that turns images into fMRI-like single-trial betas.

`simulate(cfg, out)` writes a dataset in MindEye2's layout, readable by `mindhier.data.nsd`.
"""

from mindhier.data.simulator.simulate import SimulationResult, SubjectResult, simulate

__all__ = ["SimulationResult", "SubjectResult", "simulate"]
