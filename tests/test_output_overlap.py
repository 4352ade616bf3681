"""An output never overlaps an input: is/contains refused, an existing folder inside an input refused when
--overwrite would replace it, a new output inside an input allowed, a cache command's cache inside --data allowed."""

import argparse

import pytest

from mindhier.cli.output_overlap import refuse_overlapping_output
from mindhier.errors import ConfigError


def _args(tmp_path, out, command="reconstruct", overwrite=False):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    return argparse.Namespace(command=command, data=data, out=out, overwrite=overwrite)


def test_an_output_that_is_or_holds_an_input_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is the input --data"):
        refuse_overlapping_output(_args(tmp_path, tmp_path / "data"))
    with pytest.raises(ConfigError, match="contains the input --data"):
        refuse_overlapping_output(_args(tmp_path, tmp_path))


def test_inside_an_input_only_replacing_is_refused(tmp_path):
    refuse_overlapping_output(_args(tmp_path, tmp_path / "data" / "recons"))  # new: nothing of the input touched
    refuse_overlapping_output(_args(tmp_path, tmp_path / "data" / "images"))  # exists, but no --overwrite
    with pytest.raises(ConfigError, match="lies inside the input --data"):
        refuse_overlapping_output(_args(tmp_path, tmp_path / "data" / "images", overwrite=True))
    refuse_overlapping_output(_args(tmp_path, tmp_path / "data" / "images", "features", overwrite=True))  # a cache
    refuse_overlapping_output(_args(tmp_path, tmp_path / "elsewhere", overwrite=True))
