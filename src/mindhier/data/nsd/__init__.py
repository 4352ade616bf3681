"""Reader for NSD in MindEye2's layout (betas HDF5 + WebDataset behav arrays + stimuli), real or simulated."""

from mindhier.data.nsd.dataset import SPLIT_NAMES, NSDDataset, Split, SubjectRecording, open_dataset

__all__ = ["SPLIT_NAMES", "NSDDataset", "Split", "SubjectRecording", "open_dataset"]
