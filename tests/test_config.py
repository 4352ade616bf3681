import json

import pytest

from mindhier import config as C
from mindhier.errors import ConfigError


def test_presets_differ_and_are_frozen():
    tiny, demo = C.preset("tiny"), C.preset("demo")
    assert tiny.simulator.n_train < demo.simulator.n_train
    assert tiny.preset == "tiny" and demo.preset == "demo"
    with pytest.raises(AttributeError):
        tiny.simulator.n_train = 5  # frozen


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ConfigError, match="valid presets: tiny, demo"):
        C.preset("huge")


def test_overrides_are_coerced_to_field_types():
    cfg = C.resolve(
        "tiny",
        None,
        [
            "simulator.n_train=123",
            "simulator.ncsnr_max=1.5",
            "simulator.subjects=1,2,5",
            "simulator.roi_fractions=[0.1, 0.1, 0.1, 0.1, 0.1, 0.5]",
            "stimuli.source=folder:/data/a=b",
        ],
    )
    assert cfg.simulator.n_train == 123 and isinstance(cfg.simulator.n_train, int)
    assert cfg.simulator.ncsnr_max == 1.5
    assert cfg.simulator.subjects == (1, 2, 5)
    assert cfg.simulator.roi_fractions == (0.1, 0.1, 0.1, 0.1, 0.1, 0.5)
    assert cfg.stimuli.source == "folder:/data/a=b"  # only the first "=" splits key from value


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "simulator.n_trains=5",
            "unknown config key simulator.n_trains; valid keys of simulator: subjects, n_train",
        ),
        ("simulatr.n_train=5", "unknown config key simulatr; valid keys: preset, stimuli, simulator, data"),
        ("simulator.n_train=many", "simulator.n_train expects an integer, got 'many'"),
        ("simulator.ncsnr_min=x", "simulator.ncsnr_min expects a number"),
        ("simulator.n_train", "--set expects key=value"),
        ("simulator.n_test=1", "simulator.n_test must be between 2"),
        ("simulator.roi_fractions=0.5,0.5,0.5,0.5,0.5,0.5", "must sum to 1"),
        ("stimuli.source=pictures", "stimuli.source must be scenes, photos or folder:PATH"),
        ("preset=nsd-paper", "the preset is chosen with --preset NAME"),  # a label that would not match its values
    ],
)
def test_bad_overrides_name_the_problem(override, message):
    with pytest.raises(ConfigError) as err:
        C.resolve("tiny", None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_and_json_files_layer_between_preset_and_overrides(tmp_path):
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("simulator:\n  n_train: 77\n  seed: 3\nstimuli:\n  size: 48\n")
    cfg = C.resolve("tiny", yaml_file, ["simulator.seed=4"])
    assert (cfg.simulator.n_train, cfg.simulator.seed, cfg.stimuli.size) == (77, 4, 48)
    assert cfg.simulator.n_test == C.tiny().simulator.n_test  # untouched fields keep the preset's value

    json_file = tmp_path / "run.json"
    json_file.write_text(json.dumps({"data": {"val_fraction": 0.1}}))
    assert C.resolve("demo", json_file).data.val_fraction == 0.1

    bad = tmp_path / "bad.yaml"
    bad.write_text("simulator:\n  voxels: 10\n")
    with pytest.raises(ConfigError, match=r"unknown config key simulator\.voxels"):
        C.resolve("tiny", bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        C.resolve("tiny", broken)


def test_saved_config_round_trips_with_provenance(tmp_path):
    cfg = C.resolve("tiny", None, ["simulator.n_train=99", "simulator.subjects=2"])
    C.save_resolved(cfg, tmp_path / "config.json")
    record = json.loads((tmp_path / "config.json").read_text())
    assert record["provenance"]["mindhier_version"]
    assert "git_revision" in record["provenance"]
    again = C.load_file(tmp_path / "config.json", C.demo())
    assert again == cfg
    assert C.config_hash(again) == C.config_hash(cfg)
    assert C.config_hash(C.tiny()) != C.config_hash(cfg)


def test_the_demo_scores_either_test_split_and_nothing_else(monkeypatch, tmp_path):
    from mindhier.cli import main

    assert C.resolve("tiny", None, ["demo.split=test_old"]).demo.split == "test_old"
    with pytest.raises(ConfigError, match=r"demo\.split must be test or test_old, got .val."):
        C.resolve("tiny", None, ["demo.split=val"])

    class Started(Exception):
        pass

    def run_demo(cfg, out, **_):
        raise Started(cfg)

    monkeypatch.setattr("mindhier.demo.run_demo", run_demo)
    with pytest.raises(Started) as started:
        main(["demo", "--preset", "tiny", "--split", "test_old", "--out", str(tmp_path / "demo"), "--quiet"])
    assert started.value.args[0].demo.split == "test_old"
