"""Feature cache: a teacher's targets for every stimulus of a dataset, computed once and stored compactly.

Stage 1 aligns the brain encoder to the teacher's levels for every training and evaluation image, epoch after
epoch; running a frozen CLIP ViT-L/14 on the fly would dominate training. `build_feature_cache` runs the teacher
once over every stimulus that any split of any subject refers to and writes

    meta.json                   format and version, key, teacher identity, image-set fingerprint, levels, shards
    shard-00000.safetensors     index int64 [n]; level1 … levelM float16 [n, Q_m, D_m]; text float16 [n, U, D_text]
    shard-00001.safetensors     …

Shards hold consecutive runs of the sorted stimulus indices, at most 2,048 images and about 1 GiB each (paper
scale: ViT-L/14's 4 × 257 × 768 fp16 values are 1.6 MB per image, so ~680 images a shard). `FeatureCache` reads
them lazily through memory-mapped safetensors slices, so a paper-scale cache (tens of GB) need not fit in RAM.
Levels are numbered from 1 as in the paper (e_1..e_M); `level{m}` is the teacher's m-th level, shallow to deep.

The key is the sha256 of the canonical JSON of the teacher's `describe()` and the image-set fingerprint
(`mindhier.data.feature_fingerprint`); a cache is reused only when the key matches.

Shape letters (docs/glossary.md): N images, Q tokens of a level (Q_m at level m), D width of a level (D_m),
U text tokens (of width D_text), H/W pixels.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mindhier.data.feature_fingerprint import (
    FORMAT_VERSION,
    cache_key,
    canonical_json,
    image_set_fingerprint,
    referenced_stimuli,
)
from mindhier.data.nsd import NSDDataset, open_dataset
from mindhier.errors import DataError, MindhierError
from mindhier.fileio import read_json, sha256_file, staged_directory, write_json
from mindhier.progress import ProgressFn, report
from mindhier.records import contained_path
from mindhier.teachers.base import Teacher, TeacherLevel

FORMAT_NAME = "mindhier-feature-cache"
META = "meta.json"
MAX_SHARD_IMAGES = 2048
SHARD_BYTES = 1 << 30  # fp16 bytes per shard we aim under, so one shard is a comfortable read
STORAGE_DTYPE = torch.float16
_INDEX = "index"
_TEXT = "text"


def level_key(m: int) -> str:
    """Tensor name of level m (1-based) in a shard."""
    return f"level{m}"


# ----------------------------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Plan:
    """What a build would cover, computed before any teacher forward pass."""

    indices_N: np.ndarray
    captions: list[str] | None
    teacher_identity: dict
    fingerprint: dict
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", cache_key(self.teacher_identity, self.fingerprint))


def _plan(dataset: NSDDataset, teacher: Teacher, progress: ProgressFn | None) -> _Plan:
    indices_N = referenced_stimuli(dataset)
    captions = None
    if teacher.has_text:
        captions = dataset.captions(indices_N)
        if not any(captions):
            captions = None  # no caption file: the cache simply has no text
    identity = json.loads(canonical_json(teacher.describe()))  # as it will read back from meta.json
    return _Plan(indices_N, captions, identity, image_set_fingerprint(dataset, indices_N, captions, progress))


def feature_cache_key(data_dir: str | os.PathLike[str], teacher: Teacher) -> str:
    """The key a cache of `teacher` over the dataset at `data_dir` would have."""
    with open_dataset(data_dir) as dataset:
        return _plan(dataset, teacher, None).key


def default_cache_dir(data_dir: str | os.PathLike[str], teacher_name: str, key: str) -> Path:
    return Path(data_dir) / "features" / f"{teacher_name}-{key[:12]}"


def rebuild_hint(folder: Path) -> str:
    """The fix for a damaged cache, which every command that reads it accepts: it is derived data."""
    return f"remove the folder {folder} (a derived cache: the next command that needs it rebuilds it)"


def build_feature_cache(
    data_dir: str | os.PathLike[str],
    teacher: Teacher,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
    *,
    max_shard_images: int = MAX_SHARD_IMAGES,
) -> FeatureCache:
    """Run `teacher` over every referenced stimulus of the dataset at `data_dir` and store the targets.

    Writes to `out` (default `<data_dir>/features/<teacher>-<key[:12]>/`) atomically. An existing cache with the
    same key is returned as is (`reused` True); one with another key is refused unless `overwrite`.
    """
    if batch_size < 1 or max_shard_images < 1:
        raise DataError(
            f"batch_size and max_shard_images must be positive, got {batch_size}, {max_shard_images};"
            " pass positive values"
        )
    with open_dataset(data_dir) as dataset:
        plan = _plan(dataset, teacher, progress)
        target = Path(out) if out is not None else default_cache_dir(data_dir, teacher.name, plan.key)
        if (target / META).exists() and not overwrite:
            existing = _read_meta(target, hint=rebuild_hint(target))
            if existing["key"] == plan.key:
                return FeatureCache.open(target, reused=True)
            raise DataError(
                f"feature cache {target} was built for a different configuration "
                f"({_differences(existing, plan.teacher_identity, plan.fingerprint)}); "
                "choose another --out or pass --overwrite"
            )
        if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
            raise DataError(
                f"{target} exists and is not a feature cache (no {META}); choose another --out or pass --overwrite"
            )
        with staged_directory(target, overwrite=overwrite) as staging:
            _write(staging, dataset, teacher, plan, batch_size, max_shard_images, progress)
    return FeatureCache.open(target)


def _shard_size(teacher: Teacher, text_shape: tuple[int, int] | None, max_shard_images: int) -> int:
    values_per_image = sum(level.tokens * level.dim for level in teacher.levels)
    if text_shape is not None:
        values_per_image += text_shape[0] * text_shape[1]
    bytes_per_image = values_per_image * torch.finfo(STORAGE_DTYPE).bits // 8
    return max(1, min(max_shard_images, SHARD_BYTES // max(bytes_per_image, 1)))


def _write(
    staging: Path,
    dataset: NSDDataset,
    teacher: Teacher,
    plan: _Plan,
    batch_size: int,
    max_shard_images: int,
    progress: ProgressFn | None,
) -> None:
    from safetensors.torch import save_file

    levels = tuple(teacher.levels)
    indices_N = plan.indices_N
    text_shape = None
    if plan.captions is not None:
        probe_1UD = teacher.encode_text(plan.captions[:1])
        text_shape = (int(probe_1UD.shape[1]), int(probe_1UD.shape[2]))
    per_shard = _shard_size(teacher, text_shape, max_shard_images)
    shards = []
    done = 0
    report(progress, "teacher features", 0, len(indices_N))
    for shard_number, start in enumerate(range(0, len(indices_N), per_shard)):
        shard_N = indices_N[start : start + per_shard]
        tensors = {_INDEX: torch.from_numpy(shard_N.copy())}
        for m, level in enumerate(levels, start=1):
            tensors[level_key(m)] = torch.empty((len(shard_N), level.tokens, level.dim), dtype=STORAGE_DTYPE)
        if text_shape is not None:
            tensors[_TEXT] = torch.empty((len(shard_N), *text_shape), dtype=STORAGE_DTYPE)
        for b in range(0, len(shard_N), batch_size):
            batch_N = shard_N[b : b + batch_size]
            images_NCHW = torch.from_numpy(dataset.images.load(batch_N)).permute(0, 3, 1, 2).float() / 255.0
            outputs = teacher(images_NCHW)
            if len(outputs) != len(levels):
                raise RuntimeError(
                    f"teacher {teacher.name} returned {len(outputs)} levels, its levels list {len(levels)}"
                )
            for m, output_NQD in enumerate(outputs, start=1):
                tensors[level_key(m)][b : b + len(batch_N)] = _to_storage(output_NQD, f"{teacher.name} level {m}")
            if text_shape is not None:
                captions = plan.captions[start + b : start + b + len(batch_N)]
                text_NUD = teacher.encode_text(captions)
                tensors[_TEXT][b : b + len(batch_N)] = _to_storage(text_NUD, f"{teacher.name} text")
            done += len(batch_N)
            report(progress, "teacher features", done, len(indices_N))
        name = f"shard-{shard_number:05d}.safetensors"
        save_file(tensors, str(staging / name), metadata={"format": FORMAT_NAME, "version": str(FORMAT_VERSION)})
        shards.append(
            {
                "file": name,
                "n_images": len(shard_N),
                "first_index": int(shard_N[0]),
                "last_index": int(shard_N[-1]),
                "sha256": sha256_file(staging / name),
            }
        )
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "key": plan.key,
        "teacher": plan.teacher_identity,
        "images": plan.fingerprint,
        "levels": [level.to_dict() for level in levels],
        "n_images": len(indices_N),
        "dtype": str(STORAGE_DTYPE).removeprefix("torch."),
        "text": None if text_shape is None else {"tokens": text_shape[0], "dim": text_shape[1]},
        "shards": shards,
    }
    write_json(staging / META, meta)


def _to_storage(x: torch.Tensor, what: str) -> torch.Tensor:
    stored = x.detach().to("cpu", STORAGE_DTYPE)
    if not torch.isfinite(stored).all():
        raise DataError(f"{what} features are not finite in float16 (overflow or NaN); check the teacher's weights")
    return stored


def _differences(meta: dict, teacher_identity: dict, fingerprint: dict) -> str:
    """One-line account of how a stored cache differs from the requested one."""
    parts = _dict_differences("teacher", meta.get("teacher") or {}, teacher_identity)
    old_images = meta.get("images") or {}
    changed = sorted(k for k in set(old_images) | set(fingerprint) if old_images.get(k) != fingerprint.get(k))
    if changed:
        parts.append(f"images differ in {', '.join(changed)}")
    if not parts and meta.get("version") != FORMAT_VERSION:
        parts.append(f"format version {meta.get('version')} → {FORMAT_VERSION}")
    return "; ".join(parts) or "key differs"


def _dict_differences(what: str, old: dict, new: dict) -> list[str]:
    parts = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            parts.append(f"{what} {name}: {_short(old.get(name))} → {_short(new.get(name))}")
    return parts


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------------ reading


def _read_meta(path: Path, hint: str) -> dict:
    try:
        meta = read_json(path / META, "feature cache metadata")
    except MindhierError as err:
        raise DataError(f"{err}; {hint}") from err
    required = ("format", "version", "key", "teacher", "images", "levels", "n_images", "shards")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME or any(k not in meta for k in required):
        raise DataError(f"{path / META} is not a mindhier feature cache description; {hint}")
    if meta["version"] != FORMAT_VERSION:
        raise DataError(
            f"feature cache {path} has format version {meta['version']}, this mindhier reads {FORMAT_VERSION}; {hint}"
        )
    return meta


class FeatureCache:
    """A built cache, read lazily. Use `FeatureCache.open(path)` or `build_feature_cache(...)`."""

    def __init__(self, path: Path, meta: dict, shard_starts: np.ndarray, indices_N: np.ndarray, reused: bool) -> None:
        self.path = path
        self.meta = meta
        self.reused = reused  # True when build_feature_cache found this cache already built
        self._shard_starts = shard_starts  # position of each shard's first image in `indices`
        self._indices_N = indices_N
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()

    # ------------------------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: bool = False, *, reused: bool = False) -> FeatureCache:
        """Open and check a cache folder: metadata, shard headers, shapes, dtypes and the index order.

        `verify` also re-hashes every shard against meta.json (reads the whole cache once).
        """
        from safetensors import safe_open

        root = Path(path)
        hint = rebuild_hint(root)
        if not root.is_dir():
            raise DataError(f"feature cache folder not found: {root}; build it with build_feature_cache first")
        meta = _read_meta(root, hint)
        levels = [TeacherLevel(**entry) for entry in meta["levels"]]
        expected = {_INDEX: None, **{level_key(m): (lv.tokens, lv.dim) for m, lv in enumerate(levels, start=1)}}
        if meta.get("text"):
            expected[_TEXT] = (meta["text"]["tokens"], meta["text"]["dim"])
        pieces, starts, position = [], [], 0
        for shard in meta["shards"]:
            file = contained_path(root, shard["file"], "feature shard")
            if not file.is_file():
                raise DataError(f"feature cache shard {file} is missing; {hint}")
            try:
                with safe_open(str(file), framework="pt") as handle:
                    names = set(handle.keys())
                    missing = sorted(set(expected) - names)
                    if missing:
                        raise DataError(f"feature cache shard {file} lacks tensor(s) {', '.join(missing)}; {hint}")
                    n = int(shard["n_images"])
                    for name, shape in expected.items():
                        tensor_slice = handle.get_slice(name)
                        want = [n] if shape is None else [n, *shape]
                        dtype = "I64" if shape is None else "F16"
                        if list(tensor_slice.get_shape()) != want or tensor_slice.get_dtype() != dtype:
                            raise DataError(
                                f"feature cache shard {file} tensor {name} is {tensor_slice.get_dtype()} "
                                f"{tensor_slice.get_shape()}, meta.json says {dtype} {want}; {hint}"
                            )
                    index_n = handle.get_tensor(_INDEX).numpy()
            except DataError:
                raise
            except Exception as err:  # safetensors reports a damaged header or short file in its own types
                raise DataError(f"feature cache shard {file} is corrupt ({err}); {hint}") from err
            if verify and sha256_file(file) != shard.get("sha256"):
                raise DataError(f"feature cache shard {file} does not match its checksum in meta.json; {hint}")
            pieces.append(index_n)
            starts.append(position)
            position += len(index_n)
        indices_N = np.concatenate(pieces).astype(np.int64) if pieces else np.empty(0, np.int64)
        if len(indices_N) != meta["n_images"] or np.any(np.diff(indices_N) <= 0):
            raise DataError(f"feature cache {root} holds {len(indices_N)} images out of order or miscounted; {hint}")
        return cls(root, meta, np.asarray(starts, dtype=np.int64), indices_N, reused)

    # ------------------------------------------------------------------------------ identity

    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def teacher(self) -> dict:
        """The `describe()` of the teacher that built the cache."""
        return self.meta["teacher"]

    @property
    def images(self) -> dict:
        """The image-set fingerprint."""
        return self.meta["images"]

    @property
    def levels(self) -> tuple[TeacherLevel, ...]:
        return tuple(TeacherLevel(**entry) for entry in self.meta["levels"])

    @property
    def n_images(self) -> int:
        return int(self.meta["n_images"])

    @property
    def indices(self) -> np.ndarray:
        """Sorted stimulus indices held (a copy)."""
        return self._indices_N.copy()

    @property
    def has_text(self) -> bool:
        return bool(self.meta.get("text"))

    @property
    def text_shape(self) -> tuple[int, int] | None:
        """(U, D_text) of the caption features, None without text."""
        text = self.meta.get("text")
        return (int(text["tokens"]), int(text["dim"])) if text else None

    def __len__(self) -> int:
        return self.n_images

    def __contains__(self, stimulus_index: int) -> bool:
        position = np.searchsorted(self._indices_N, stimulus_index)
        return bool(position < len(self._indices_N) and self._indices_N[position] == stimulus_index)

    def check_matches(self, teacher_identity: dict) -> None:
        """Refuse a cache built with another teacher configuration than `teacher_identity` (a `describe()`)."""
        wanted = json.loads(canonical_json(teacher_identity))
        if wanted != self.teacher:
            differences = "; ".join(_dict_differences("teacher", self.teacher, wanted))
            raise DataError(
                f"feature cache {self.path} was built with another teacher ({differences}); "
                "rebuild the cache for this teacher configuration or point the run at the matching cache"
            )

    # ------------------------------------------------------------------------------ reading

    def get(self, stimulus_indices, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """One tensor [N, Q_m, D_m] per level for these stimuli, in the requested order (repeats allowed)."""
        positions_N = self._positions(stimulus_indices)
        return [self._gather(level_key(m), positions_N, dtype) for m in range(1, len(self.meta["levels"]) + 1)]

    def get_text(self, stimulus_indices, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Caption features [N, U, D_text] for these stimuli, in the requested order."""
        if not self.has_text:
            raise DataError(f"feature cache {self.path} has no caption features; rebuild it with teacher.text=true")
        return self._gather(_TEXT, self._positions(stimulus_indices), dtype)

    def load_all(self, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
        """Every level for every image, in `indices` order (small sets only: it all lands in memory)."""
        out = []
        for m in range(1, len(self.meta["levels"]) + 1):
            parts = [self._handle(s).get_tensor(level_key(m)).to(dtype) for s in range(len(self._shard_starts))]
            out.append(torch.cat(parts) if parts else torch.empty(0))
        return out

    def _positions(self, stimulus_indices) -> np.ndarray:
        requested_N = np.asarray(stimulus_indices, dtype=np.int64).reshape(-1)
        positions_N = np.searchsorted(self._indices_N, requested_N)
        clipped_N = np.minimum(positions_N, max(len(self._indices_N) - 1, 0))
        unknown = (positions_N >= len(self._indices_N)) | (self._indices_N[clipped_N] != requested_N)
        if unknown.any():
            first = int(requested_N[np.flatnonzero(unknown)[0]])
            raise DataError(
                f"stimulus {first} is not in feature cache {self.path} ({self.n_images} images); "
                "rebuild the cache for this dataset"
            )
        return positions_N

    def _gather(self, name: str, positions_N: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        shard_N = np.searchsorted(self._shard_starts, positions_N, side="right") - 1
        rows_N = positions_N - self._shard_starts[shard_N]
        pieces: list[torch.Tensor] = []
        owners: list[np.ndarray] = []
        for shard in np.unique(shard_N):
            members = np.flatnonzero(shard_N == shard)
            order = members[np.argsort(rows_N[members], kind="stable")]
            sorted_rows = rows_N[order]
            tensor_slice = self._handle(int(shard)).get_slice(name)
            # contiguous runs of rows become one memory-mapped slice read each
            breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
            for run in np.split(np.arange(len(order)), breaks):
                first, last = int(sorted_rows[run[0]]), int(sorted_rows[run[-1]])
                pieces.append(tensor_slice[first : last + 1])
                owners.append(order[run])
        if not pieces:
            shape = self._tensor_shape(name)
            return torch.empty((0, *shape), dtype=dtype)
        stacked = torch.cat(pieces)
        result = torch.empty_like(stacked)
        result[torch.from_numpy(np.concatenate(owners))] = stacked
        return result.to(dtype)

    def _tensor_shape(self, name: str) -> tuple[int, ...]:
        if name == _TEXT:
            return self.text_shape or ()
        entry = self.meta["levels"][int(name.removeprefix("level")) - 1]
        return (entry["tokens"], entry["dim"])

    def _handle(self, shard: int):
        from safetensors import safe_open

        if self._pid != os.getpid():  # a forked DataLoader worker opens its own maps
            self._handles, self._pid = {}, os.getpid()
        if shard not in self._handles:
            file = self.path / self.meta["shards"][shard]["file"]
            try:
                self._handles[shard] = safe_open(str(file), framework="pt")
            except Exception as err:
                raise DataError(f"cannot open feature cache shard {file} ({err}); {rebuild_hint(self.path)}") from err
        return self._handles[shard]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}  # memory maps do not pickle; each process reopens them
        return state

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.path)!r}, n_images={self.n_images}, levels={len(self.meta['levels'])})"
