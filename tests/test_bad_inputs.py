"""The bad-input catalogue: one table of (case → command → expected line), across every command.

Each case prepares what it needs in a fresh folder (damaged copies of a tiny dataset and of tiny runs), runs
the command in-process and expects exit status 2, no traceback, nothing on stdout, and one error line that
names the problem (the expected words) and its fix (after `; `) — argparse's errors included."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from mindhier import run_layout
from mindhier.cli import main
from mindhier.config import resolve, resolved_record
from mindhier.data import layout
from mindhier.output_lock import hold_output


class World:
    """Damaged copies of the session's tiny dataset and runs, made on demand inside one case's folder."""

    def __init__(self, root: Path, data: Path, encoder: Path, tokenizer: Path):
        self.root, self._data, self._encoder, self._tokenizer = root, data, encoder, tokenizer

    @property
    def data(self) -> Path:
        """A copy made on first use: a command that fails late may have written caches into its dataset."""
        if not (self.root / "data").exists():
            shutil.copytree(self._data, self.root / "data")
        return self.root / "data"

    @property
    def encoder(self) -> Path:
        return self._encoder

    @property
    def tokenizer(self) -> Path:
        return self._tokenizer

    def copy(self, which: str) -> Path:
        source = {"data": self._data, "encoder": self._encoder, "tokenizer": self._tokenizer}[which]
        target = self.root / f"{which}-copy"
        shutil.copytree(source, target)
        return target

    def file(self, name: str, content: bytes | str = b"x") -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def folder(self, name: str, files: dict[str, str] | None = None) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        for file, text in (files or {}).items():
            (path / file).write_text(text)
        return path

    def out(self) -> Path:
        return self.root / "out"


def _edit_json(path: Path, change: Callable[[dict], None]) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def _nan_weights(run: Path, kind: str) -> Path:
    weights = run / run_layout.weights_file(kind)
    state = load_file(str(weights))
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][..., 0] = float("nan")
    save_file(state, str(weights))
    return run


def _truncate(path: Path, keep: int = 100) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


def _nan_betas(w: World, value: float = np.nan) -> Path:
    data = w.copy("data")
    with h5py.File(layout.betas_path(data, 1), "r+") as f:
        f["betas"][0, 0] = value
    return data


def _huge_png(data: Path) -> None:
    """A 12000² stimulus (1-bit, so the file is small; decoded as RGB it would take 432 MB)."""
    Image.new("1", (12000, 12000)).save(_first_png(data))


def _first_png(data: Path) -> Path:
    return sorted((data / layout.IMAGE_DIR).glob("*.png"))[0]


def _stimuli(w: World, *names_and_modes: tuple[str, str]) -> Path:
    folder = w.folder("stimuli")
    for name, mode in names_and_modes:
        Image.new(mode, (40, 40)).save(folder / name)
    return folder


def _shapes_without(w: World, key: str) -> Path:
    run = w.copy("encoder")
    _edit_json(run / run_layout.shapes_file("encoder"), lambda r: r.pop(key))
    return run


def _generator_started_on_other_inputs(w: World) -> Path:
    """A generator run as `train generator` starts it, on frozen inputs whose weights are not the world's."""
    run = w.folder("gen")
    run_layout.write_run_config(run, "generator", resolved_record(resolve("tiny")), {"world_size": 1})
    digests = {"encoder": "0" * 64, "tokenizer": "1" * 64}
    (run / run_layout.INPUTS).write_text(json.dumps({"weights_sha256": digests}))
    return run


def _over_part_of(run: Path, data: Path) -> list:
    """--overwrite on an existing folder inside an input: it would replace part of the input."""
    return ["reconstruct", "--generator", run, "--data", data, "--out", run / "resume", "--overwrite"]


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    return link


def _eval_manifest(w: World, **manifest) -> list:
    recons = _recons_folder(w, manifest)
    return ["eval", "recons", "--recons", recons, "--data", w.data, "--out", w.out(), "--no-judge"]


def _recons_folder(w: World, manifest: dict | None = None, png: bytes | None = None) -> Path:
    folder = w.folder("recons")
    if manifest is not None:
        (folder / "manifest.json").write_text(json.dumps(manifest))
    if png is not None:
        (folder / layout.image_png_name(0)).write_bytes(png)
    return folder


def _data_with(w: World, change: Callable[[Path], object]) -> Path:
    data = w.copy("data")
    change(data)
    return data


def _shapes_with(w: World, **values) -> Path:
    run = w.copy("encoder")
    _edit_json(run / run_layout.shapes_file("encoder"), lambda r: r.update(values))
    return run


def _encoder_with(w: World, change: Callable[[Path], object]) -> Path:
    run = w.copy("encoder")
    change(run)
    return run


def _store(value: str) -> Callable[[dict], None]:
    return lambda manifest: manifest.update(image_store=value)


def _locked(w: World, argv: list) -> list:
    w._held = hold_output(w.out())  # released when the case's World is dropped (end of the test)
    w._held.__enter__()
    return argv


SMALL = ("--n-train", "2", "--n-test", "2")
# (case id, argv from the world, words the error line must contain)
CASES: list[tuple[str, Callable[[World], list], tuple[str, ...]]] = [
    # ---------------------------------------------------------------------------------------- flags, config
    ("seed negative", lambda w: ["simulate", "--out", w.out(), "--seed", "-5"], ("--seed", "at least 0")),
    ("threads negative", lambda w: ["simulate", "--out", w.out(), "--threads", "-1"], ("--threads", "at least 1")),
    ("threads not a number", lambda w: ["simulate", "--out", w.out(), "--threads", "two"], ("whole number",)),
    ("threads absurd", lambda w: ["simulate", "--out", w.out(), "--threads", "100000"], ("--threads", "at most")),
    ("n-train zero", lambda w: ["simulate", "--out", w.out(), "--n-train", "0"], ("--n-train", "at least 1")),
    ("size not a number", lambda w: ["simulate", "--out", w.out(), "--size", "big"], ("--size", "whole number")),
    ("unknown preset", lambda w: ["config", "show", "--preset", "huge"], ("--preset", "invalid choice")),
    ("unknown flag", lambda w: ["simulate", "--out", w.out(), "--nosuch"], ("unrecognized", "--help")),
    ("no command", lambda w: [], ("required", "--help")),
    ("out missing", lambda w: ["simulate"], ("--out", "mindhier simulate --help")),
    ("out is the root", lambda w: ["simulate", "--out", "/", "--preset", "tiny"], ("root", "below it")),
    ("out name too long", lambda w: ["simulate", "--out", w.root / ("n" * 240)], ("240 bytes", "at most 225")),
    ("n-train overflows", lambda w: ["simulate", "--out", w.out(), "--n-train", "9" * 30], ("--n-train", "at most")),
    ("plan infinite memory", lambda w: ["plan", "--gpus", "8", "--gpu-memory", "inf"], ("--gpu-memory", "got inf")),
    ("plan infinite tflops", lambda w: ["plan", "--gpus", "8", "--gpu-memory", "80", "--gpu-tflops", "inf"], ("inf",)),
    ("plan mfu nan", lambda w: ["plan", "--gpus", "8", "--gpu-memory", "80", "--mfu", "nan"], ("--mfu",)),
    ("set not a number", lambda w: ["config", "show", "--set", "simulator.seed=abc"], ("simulator.seed",)),
    ("set unknown key", lambda w: ["config", "show", "--set", "simulator.nosuch=1"], ("nosuch",)),
    ("set without =", lambda w: ["config", "show", "--set", "simulator.seed"], ("simulator.seed",)),
    ("set out of range", lambda w: ["config", "show", "--set", "simulator.n_train=-3"], ("simulator.n_train",)),
    ("config missing", lambda w: ["config", "show", "--config", w.root / "no.yaml"], ("config file not found",)),
    (
        "config bad yaml",
        lambda w: ["config", "show", "--config", w.file("bad.yaml", "a: [1, 2\n")],
        ("cannot be parsed",),
    ),
    (
        "config not utf-8",
        lambda w: [
            "config",
            "show",
            "--config",
            w.file("latin.yaml", "simulator:\n  seed: 1 # caf\xe9\n".encode("latin-1")),
        ],
        ("not UTF-8",),
    ),
    (
        "config file relabels the preset",
        lambda w: ["config", "show", "--config", w.file("c.yaml", "preset: nsd-paper\nsimulator:\n  seed: 3\n")],
        ("says preset: nsd-paper", "--preset nsd-paper"),
    ),
    ("config a list", lambda w: ["config", "show", "--config", w.file("list.yaml", "- 1\n- 2\n")], ("config",)),
    (
        "config unknown section",
        lambda w: ["config", "show", "--config", w.file("u.json", '{"nosuch": {}}')],
        ("nosuch",),
    ),
    (
        "plan zero gpus",
        lambda w: ["plan", "--preset", "tiny", "--gpus", "0", "--gpu-memory", "80"],
        ("--gpus", "at least 1"),
    ),
    # ---------------------------------------------------------------------------------------------- outputs
    ("simulate out is a file", lambda w: ["simulate", "--out", w.file("taken"), "--preset", "tiny"], ("not a folder",)),
    (
        "simulate out not empty",
        lambda w: ["simulate", "--out", w.folder("mine", {"notes.txt": "keep"}), "--preset", "tiny"],
        ("not empty", "--overwrite"),
    ),
    (
        "simulate out under a file",
        lambda w: ["simulate", "--out", w.file("plain") / "sub", "--preset", "tiny"],
        ("plain", "is a file"),
    ),
    ("simulate out locked", lambda w: _locked(w, ["simulate", "--out", w.out()]), ("another mindhier process",)),
    (
        "train out is a file",
        lambda w: ["train", "tokenizer", "--preset", "tiny", "--data", w.data, "--out", w.file("runfile")],
        ("is a file",),
    ),
    (
        "train out holds a run",
        lambda w: ["train", "tokenizer", "--preset", "tiny", "--data", w.data, "--out", w.tokenizer],
        ("already holds a run", "--resume"),
    ),
    (
        "resume with another config",
        lambda w: [
            "train",
            "tokenizer",
            "--preset",
            "tiny",
            "--data",
            w.data,
            "--out",
            w.copy("tokenizer"),
            "--resume",
            "--set",
            "train_tokenizer.lr=0.5",
        ],
        ("different config", "train_tokenizer.lr"),
    ),
    (
        "resume with other frozen inputs",
        lambda w: [*_generator(w), "--out", _generator_started_on_other_inputs(w), "--resume"],
        ("encoder and tokenizer weights differ", "inputs.json"),
    ),
    (
        "out locked through a symlink",
        lambda w: _locked(w, ["simulate", "--out", _symlink(w.root / "link", w.folder("out"))]),
        ("another mindhier process",),
    ),
    (
        "resume a run of another kind",
        lambda w: ["train", "tokenizer", "--preset", "tiny", "--data", w.data, "--out", w.copy("encoder"), "--resume"],
        ("encoder run, not a tokenizer run",),
    ),
    (
        "tokenize into a user's folder",
        lambda w: ["tokenize", "--data", w.data, "--run", w.tokenizer, "--out", w.folder("mine", {"a.txt": "keep"})],
        ("not empty", "--overwrite"),
    ),
    (
        "report into a user's folder",
        lambda w: ["report", w.folder("pipeline/eval").parent, "--out", w.folder("mine", {"a.txt": "keep"})],
        ("not empty", "--overwrite"),
    ),
    (
        "eval recons over a metrics file",
        lambda w: [
            "eval",
            "recons",
            "--recons",
            w.folder("recons"),
            "--data",
            w.data,
            "--out",
            w.folder("ev", {"metrics.json": "{}"}),
        ],
        ("metrics.json", "exists", "--overwrite"),
    ),
    (
        "eval encoder over its result",
        lambda w: [
            "eval",
            "encoder",
            "--run",
            w.encoder,
            "--data",
            w.data,
            "--out",
            w.folder("ev", {"encoder_eval.json": "{}"}),
        ],
        ("encoder_eval.json", "--overwrite"),
    ),
    (
        "bench result exists",
        lambda w: ["bench", "sampler", "--preset", "tiny", "--out", w.file("bench.json", "{}")],
        ("bench.json", "--overwrite"),
    ),
    (
        "bench result is a folder",
        lambda w: ["bench", "sampler", "--preset", "tiny", "--out", w.folder("b")],
        ("folder",),
    ),
    ("demo out locked", lambda w: _locked(w, ["demo", "--out", w.out()]), ("another mindhier process",)),
    ("train out locked", lambda w: _locked(w, ["train", "encoder", "--data", w.data, "--out", w.out()]), ("another",)),
    (
        "demo into a user's folder",
        lambda w: ["demo", "--preset", "tiny", "--out", w.folder("mine", {"thesis.tex": "keep"})],
        ("not a demo folder",),
    ),
    # --------------------------------------------------------------------------------------------- datasets
    ("data info missing", lambda w: ["data", "info", w.root / "absent"], ("dataset folder not found",)),
    ("data info empty folder", lambda w: ["data", "info", w.folder("empty")], ("empty",)),
    ("data info nan betas", lambda w: ["data", "info", _nan_betas(w)], ("NaN",)),
    ("data info huge png", lambda w: ["data", "info", _data_with(w, _huge_png)], ("144,000,000 pixels", "downscale")),
    ("train on a huge png", lambda w: [*_encoder(w), "--data", _data_with(w, _huge_png)], ("data.max_image_pixels",)),
    ("data info absurd beta", lambda w: ["data", "info", _nan_betas(w, 3e38)], ("far outside a z-scored range",)),
    ("train on an absurd beta", lambda w: [*_encoder(w), "--data", _nan_betas(w, 3e38)], ("z-score each session",)),
    (
        "data info truncated betas",
        lambda w: ["data", "info", _data_with(w, lambda d: _truncate(layout.betas_path(d, 1)))],
        ("betas",),
    ),
    (
        "data info missing image",
        lambda w: ["data", "info", _data_with(w, lambda d: _first_png(d).unlink())],
        ("missing",),
    ),
    (
        "data info corrupt image",
        lambda w: ["data", "info", _data_with(w, lambda d: _truncate(_first_png(d), 30))],
        ("cannot read",),
    ),
    (
        "manifest image store outside",
        lambda w: ["data", "info", _data_with(w, lambda d: _edit_json(d / layout.MANIFEST, _store("../../")))],
        ("image_store", "outside"),
    ),
    (
        "manifest image store absolute",
        lambda w: ["data", "info", _data_with(w, lambda d: _edit_json(d / layout.MANIFEST, _store("/etc")))],
        ("image_store", "outside"),
    ),
    (
        "train on missing data",
        lambda w: ["train", "encoder", "--data", w.root / "absent", "--out", w.out()],
        ("not found",),
    ),
    (
        "train absent subject",
        lambda w: ["train", "encoder", "--preset", "tiny", "--data", w.data, "--out", w.out(), "--subjects", "9"],
        ("subject", "9"),
    ),
    (
        "train on nan betas",
        lambda w: ["train", "encoder", "--preset", "tiny", "--data", _nan_betas(w), "--out", w.out()],
        ("NaN",),
    ),
    (
        "stimuli folder missing",
        lambda w: ["train", "tokenizer", "--preset", "tiny", "--data", f"folder:{w.root / 'none'}", "--out", w.out()],
        ("none",),
    ),
    (
        "simulate stimuli unknown",
        lambda w: ["simulate", "--preset", "tiny", "--out", w.out(), "--stimuli", "paintings"],
        ("paintings",),
    ),
    (
        "simulate stimuli unreadable",
        lambda w: ["simulate", "--preset", "tiny", "--out", w.out(), *SMALL, "--stimuli", _junk_images(w)],
        ("cannot read image",),
    ),
    (
        "simulate stimuli too few",
        lambda w: [
            "simulate",
            "--preset",
            "tiny",
            "--out",
            w.out(),
            "--stimuli",
            f"folder:{_stimuli(w, ('a.png', 'RGB'))}",
        ],
        ("has only", "--n-train"),
    ),
    # -------------------------------------------------------------------------------------------- run files
    ("encoder absent", lambda w: _generator(w, encoder=w.root / "absent"), ("not found",)),
    # a user error found after the run folder was started takes back what the call wrote (no folder is left)
    ("feature cache corrupt", lambda w: [*_encoder(w), "--data", _corrupt_features(w)], ("remove the folder",)),
    ("train encoder nan betas", lambda w: [*_encoder(w), "--data", _nan_betas(w)], ("NaN",)),
    ("train encoder subject absent", lambda w: [*_encoder(w), "--subjects", "9"], ("9",)),
    ("adapt sessions 99", lambda w: _adapt(w, "--sessions", "99"), ("sessions",)),
    ("generator init absent", lambda w: [*_generator(w), "--init", w.root / "absent.safetensors"], ("init",)),
    ("encoder is a tokenizer run", lambda w: _generator(w, encoder=w.tokenizer), ("tokenizer run, not a encoder",)),
    ("tokenizer is an encoder run", lambda w: _generator(w, tokenizer=w.encoder), ("encoder run, not a tokenizer",)),
    ("encoder nan weights", lambda w: _generator(w, encoder=_nan_weights(w.copy("encoder"), "encoder")), ("NaN",)),
    (
        "tokenizer nan weights",
        lambda w: [
            "tokenize",
            "--data",
            w.data,
            "--run",
            _nan_weights(w.copy("tokenizer"), "tokenizer"),
            "--out",
            w.out(),
        ],
        ("NaN",),
    ),
    (
        "encoder truncated weights",
        lambda w: _generator(w, encoder=_encoder_with(w, lambda r: _truncate(r / run_layout.weights_file("encoder")))),
        ("corrupt",),
    ),
    (
        "run config not json",
        lambda w: _generator(w, encoder=_encoder_with(w, lambda r: _write_bytes(r / "config.json", b"{ nope"))),
        ("not valid JSON",),
    ),
    (
        "run config not utf-8",
        lambda w: _generator(w, encoder=_encoder_with(w, lambda r: _write_bytes(r / "config.json", b"\xff\xfe{"))),
        ("config.json",),
    ),
    (
        "run config without config",
        lambda w: _generator(
            w, encoder=_encoder_with(w, lambda r: _edit_json(r / "config.json", lambda c: c.pop("config")))
        ),
        ("no 'config' key",),
    ),
    (
        "run config with wrong types",
        lambda w: _generator(
            w, encoder=_encoder_with(w, lambda r: _edit_json(r / "config.json", lambda c: c.update(config=[1])))
        ),
        ("malformed",),
    ),
    (
        "run config unknown kind",
        lambda w: _generator(
            w, encoder=_encoder_with(w, lambda r: _edit_json(r / "config.json", lambda c: c.update(kind="vae")))
        ),
        ("unknown run kind",),
    ),
    (
        "shapes missing a key",
        lambda w: _generator(w, encoder=_shapes_without(w, "queries")),
        ("encoder shapes", "queries"),
    ),
    # numbers in run files are checked like numbers on the command line
    (
        "encoder shapes absurd voxels",
        lambda w: _generator(w, encoder=_shapes_with(w, subject_voxels=[[1, 2**45]])),
        ("voxel count", "should be in 1..10,000,000"),
    ),
    ("encoder shapes negative queries", lambda w: _generator(w, encoder=_shapes_with(w, queries=-4)), ("queries",)),
    ("encoder shapes a string", lambda w: _generator(w, encoder=_shapes_with(w, queries="16")), ("whole number",)),
    (
        "token cache out of range",
        lambda w: _generator(w, data=_tampered_tokens(w)),
        ("token id", "codebook"),
    ),
    # ------------------------------------------------------------------------------------------ reconstruct
    ("reconstruct absent run", lambda w: _reconstruct(w, w.root / "absent"), ("run folder not found",)),
    ("reconstruct encoder run", lambda w: _reconstruct(w, w.encoder), ("not a generator",)),
    (
        "reconstruct set architecture",
        lambda w: _reconstruct(w, w.folder("gen"), "--set", "generator.width=64"),
        ("generator.width=64", "trained component"),
    ),
    (
        "reconstruct over its data",
        lambda w: _reconstruct(w, w.encoder, "--out", w.data, "--overwrite"),
        ("is the input",),
    ),
    (
        "reconstruct over part of its run",
        lambda w: _over_part_of(w.copy("encoder"), w.data),
        ("lies inside the input --generator",),
    ),
    ("reconstruct out holds its data", lambda w: _reconstruct(w, w.encoder, "--out", w.root), ("contains the input",)),
    ("reconstruct zero samples", lambda w: _reconstruct(w, w.root, "--samples", "0"), ("--samples", "at least 1")),
    (
        "reconstruct endless determinism",
        lambda w: _reconstruct(w, w.root, "--determinism", "100000"),
        ("--determinism", "at most 64"),
    ),
    (
        "reconstruct on cuda without it",
        lambda w: _reconstruct(w, w.folder("gen"), "--device", "cuda"),
        ("--device cpu",),
    ),
    ("reconstruct on a tpu", lambda w: _reconstruct(w, w.root, "--device", "tpu"), ("--device", "cpu, cuda or cuda:N")),
    (
        "ceiling with an encoder run",
        lambda w: ["ceiling", "--tokenizer", w.encoder, "--data", w.data, "--out", w.out()],
        ("not a tokenizer run",),
    ),
    # ------------------------------------------------------------------------------------------- evaluation
    (
        "eval recons absent",
        lambda w: ["eval", "recons", "--recons", w.root / "no", "--data", w.data, "--out", w.out()],
        ("not found",),
    ),
    (
        "eval recons without manifest",
        lambda w: ["eval", "recons", "--recons", _recons_folder(w), "--data", w.data, "--out", w.out()],
        ("manifest",),
    ),
    (
        "eval recons manifest without subject",
        lambda w: [
            "eval",
            "recons",
            "--recons",
            _recons_folder(w, {"split": "test"}),
            "--data",
            w.data,
            "--out",
            w.out(),
            "--no-judge",
        ],
        ("subject",),
    ),
    ("eval recons manifest subject text", lambda w: _eval_manifest(w, subject="one"), ("subject", "whole number")),
    ("eval recons manifest unknown split", lambda w: _eval_manifest(w, subject=1, split="all"), ("split",)),
    ("eval recons manifest strips outside", lambda w: _eval_manifest(w, subject=1, strips="/etc"), ("strips",)),
    ("eval recons manifest bad scale", lambda w: _eval_manifest(w, subject=1, protocol={"scales": [-2]}), ("scale",)),
    (
        "eval recons missing images",
        lambda w: [
            "eval",
            "recons",
            "--recons",
            _recons_folder(w, {"subject": 1, "split": "test"}),
            "--data",
            w.data,
            "--out",
            w.out(),
            "--no-judge",
        ],
        ("reconstructions are missing",),
    ),
    (
        "eval recons weights without =",
        lambda w: [
            "eval",
            "recons",
            "--recons",
            w.folder("recons"),
            "--data",
            w.data,
            "--out",
            w.out(),
            "--weights",
            "alexnet",
        ],
        ("name=PATH",),
    ),
    ("eval compare one file", lambda w: ["eval", "compare", w.file("m.json", "{}")], ("at least two",)),
    (
        "eval compare not json",
        lambda w: ["eval", "compare", w.file("a.json", "{"), w.file("b.json", "{")],
        ("not valid JSON",),
    ),
    (
        "eval encoder absent",
        lambda w: ["eval", "encoder", "--run", w.root / "no", "--data", w.data],
        ("run folder not found",),
    ),
    (
        "eval encoder tokenizer run",
        lambda w: ["eval", "encoder", "--run", w.tokenizer, "--data", w.data, "--out", w.out()],
        ("not a encoder",),
    ),
    ("report absent run", lambda w: ["report", w.root / "absent", "--out", w.out()], ("absent", "not a pipeline run")),
    ("features on missing data", lambda w: ["features", "--data", w.root / "absent", "--out", w.out()], ("not found",)),
    (
        "tokenize on missing data",
        lambda w: ["tokenize", "--data", w.root / "absent", "--run", w.tokenizer, "--out", w.out()],
        ("not found",),
    ),
    ("pretrain nothing to do", lambda w: ["pretrain", "tokenizer"], ("--out",)),
]


def _write_bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _junk_images(w: World) -> str:
    folder = w.folder("pics")
    for k in range(6):
        (folder / f"{k}.png").write_bytes(b"not a png")
    return f"folder:{folder}"


def _generator(w: World, data: Path | None = None, encoder: Path | None = None, tokenizer: Path | None = None) -> list:
    return [
        "train",
        "generator",
        "--preset",
        "tiny",
        "--data",
        data or w.data,
        "--encoder",
        encoder or w.encoder,
        "--tokenizer",
        tokenizer or w.tokenizer,
        "--out",
        w.out(),
    ]


def _encoder(w: World) -> list:
    return ["train", "encoder", "--preset", "tiny", "--data", w.data, "--out", w.out()]


def _adapt(w: World, *extra: str) -> list:
    return ["adapt", "--run", w.encoder, "--data", w.data, "--subject", "1", "--out", w.out(), *extra]


def _reconstruct(w: World, generator: Path, *extra: str) -> list:
    return ["reconstruct", "--generator", generator, "--data", w.data, "--out", w.out(), *extra]


def _corrupt_features(w: World) -> Path:
    data = w.copy("data")
    for shard in (data / "features").rglob("*.safetensors"):
        _truncate(shard)
    return data


def _tampered_tokens(w: World) -> Path:
    """A dataset copy whose token cache for the tiny tokenizer holds an id past the codebook."""
    data = w.copy("data")
    assert main(["tokenize", "--data", str(data), "--run", str(w.tokenizer), "--quiet"]) == 0
    (cache,) = (data / "tokens").iterdir()
    tokens = load_file(str(cache / "tokens.safetensors"))
    tokens["scale1"][0, 0] = 10**6
    save_file(tokens, str(cache / "tokens.safetensors"))
    return data


def test_the_catalogue_is_large():
    assert len(CASES) >= 110
    assert len({case for case, _, _ in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def world_paths(tiny_stage_runs):
    _, result, encoder, tokenizer = tiny_stage_runs
    return result.root, encoder, tokenizer


@pytest.mark.parametrize(("case", "argv", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line(case, argv, expected, world_paths, tmp_path, capsys):
    world = World(tmp_path, *world_paths)
    args = [str(a) for a in argv(world)]
    out_existed = world.out().exists()
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as stop:  # argparse: the same one line
        code = stop.code
    finally:
        held = getattr(world, "_held", None)
        if held is not None:
            held.__exit__(None, None, None)
    out, err = capsys.readouterr()
    assert code == 2, f"{case}: exit {code}\n{err}"
    assert out_existed or not world.out().exists(), f"{case}: left {sorted(world.out().rglob('*'))}"
    assert "Traceback" not in err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{case}: more than one line on stderr:\n{err}"
    line = lines[0]
    assert line.startswith("mindhier: error: "), line
    problem, sep, fix = line.removeprefix("mindhier: error: ").partition("; ")
    assert sep and problem and fix, f"{case}: no '<problem>; <fix>' in {line!r}"
    for words in expected:
        assert words in line, f"{case}: {words!r} not in {line!r}"
