"""Token cache: every stimulus's multi-scale token maps under a trained tokenizer, computed once.

Stage 2 trains on token maps, never re-encoding images. `build_token_cache` encodes every stimulus that
any split of any subject refers to, at the tokenizer's size, and writes

    meta.json             key, tokenizer identity (config + weights sha256), image-set fingerprint, scales
    tokens.safetensors    index int64 [N]; scale1 … scaleK int32 [N, s_k²]

The key hashes the tokenizer identity and the image-set fingerprint (`feature_fingerprint`); a cache made
with another tokenizer or other images is never reused. The caller loads the tokenizer (`runs.load_tokenizer`)
and hands it in with its identity (`tokenizer_source.TokenizerSource.identity`).

Shape letters (docs/glossary.md): N images, l = s² tokens of a scale.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mindhier.data.feature_fingerprint import canonical_json, image_set_fingerprint, referenced_stimuli
from mindhier.data.image_tensors import resize_uint8, to_model_input
from mindhier.data.nsd import open_dataset
from mindhier.errors import DataError
from mindhier.fileio import read_json, staged_directory, write_json
from mindhier.progress import ProgressFn, report
from mindhier.records import read_record

if TYPE_CHECKING:
    from mindhier.models.tokenizer import Tokenizer

META = "meta.json"
TOKENS = "tokens.safetensors"
FORMAT_VERSION = 1


def _remove_hint(folder: Path) -> str:
    """The fix for a damaged cache that every command accepts: it is derived data."""
    return f"remove the folder {folder} (a derived cache: the next command that needs it rebuilds it)"


@dataclass(frozen=True)
class TokenCache:
    path: Path
    key: str
    scales: tuple[int, ...]
    indices: np.ndarray  # int64 stimulus indices, sorted
    tokens: tuple[torch.Tensor, ...]  # int32 [N, s_k²] per scale
    reused: bool = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], reused: bool = False) -> TokenCache:
        path = Path(path)
        meta = read_record(path / META, "token-cache metadata", {"key": str, "scales": list})
        try:
            tensors = load_file(str(path / TOKENS))
        except (SafetensorError, OSError, FileNotFoundError) as err:
            raise DataError(f"token cache {path} is unreadable ({err}); {_remove_hint(path)}") from err
        scales = tuple(int(s) for s in meta["scales"])
        names = ["index", *(f"scale{k + 1}" for k in range(len(scales)))]
        if any(name not in tensors for name in names):
            raise DataError(f"token cache {path} lacks {sorted(set(names) - set(tensors))}; {_remove_hint(path)}")
        tokens = tuple(tensors[f"scale{k + 1}"] for k in range(len(scales)))
        n = len(tensors["index"])
        for k, (s, t) in enumerate(zip(scales, tokens, strict=True)):
            if t.is_floating_point() or tuple(t.shape) != (n, s * s) or (t.numel() and int(t.min()) < 0):
                raise DataError(
                    f"token cache {path}: scale {k + 1} should be non-negative integer ids of shape [{n}, {s * s}]; "
                    f"{_remove_hint(path)}"
                )
        return cls(path, meta["key"], scales, tensors["index"].numpy(), tokens, reused)

    def check_vocabulary(self, codebook_size: int) -> None:
        """Refuse token ids the tokenizer's codebook does not have (a cache from another tokenizer, or damaged)."""
        largest = max((int(t.max()) for t in self.tokens if t.numel()), default=-1)
        if largest >= codebook_size:
            raise DataError(
                f"token cache {self.path} holds token id {largest}, the codebook has {codebook_size} codes; "
                f"{_remove_hint(self.path)}"
            )

    def get(self, stimuli: np.ndarray) -> list[torch.Tensor]:
        """Token maps (int64) per scale for these stimulus indices, in order."""
        rows = np.searchsorted(self.indices, stimuli)
        rows = np.clip(rows, 0, len(self.indices) - 1)
        if not np.array_equal(self.indices[rows], np.asarray(stimuli)):
            raise DataError(f"token cache {self.path} lacks some requested stimuli; {_remove_hint(self.path)}")
        rows_t = torch.from_numpy(rows)
        return [t[rows_t].long() for t in self.tokens]


def build_token_cache(
    data_dir: str | os.PathLike[str],
    tokenizer: Tokenizer,
    tokenizer_identity: dict[str, Any],
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 128,
    progress: ProgressFn | None = None,
    overwrite: bool = False,
) -> TokenCache:
    """Encode every referenced stimulus with `tokenizer` (loaded, in eval mode, on the device it runs on) and store
    the tokens; a cache with the same key is reused. `tokenizer_identity`: what its tokens depend on — its config
    and its weights' bytes (`TokenizerSource.identity()`) — hashed into the key."""
    device = next(tokenizer.parameters()).device
    with open_dataset(data_dir) as dataset:
        indices = referenced_stimuli(dataset)
        fingerprint = image_set_fingerprint(dataset, indices)
        key = hashlib.sha256(
            canonical_json({"format": FORMAT_VERSION, "tokenizer": tokenizer_identity, "images": fingerprint}).encode()
        ).hexdigest()
        target = Path(out) if out is not None else Path(data_dir) / "tokens" / f"tokenizer-{key[:12]}"
        if (target / META).is_file():
            existing = read_json(target / META, "token-cache metadata")
            if existing.get("key") == key:
                return TokenCache.open(target, reused=True)
            if not overwrite:
                raise DataError(
                    f"token cache {target} was made with another tokenizer or other images; "
                    "choose another --out or pass --overwrite"
                )
        per_scale: list[list[torch.Tensor]] = [[] for _ in tokenizer.cfg.scales]
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            images = resize_uint8(dataset.images.load(chunk), tokenizer.cfg.image_px)
            for k, t in enumerate(tokenizer.encode(to_model_input(images, device))):
                per_scale[k].append(t.to(torch.int32).cpu())
            report(progress, "tokenize stimuli", min(start + batch_size, len(indices)), len(indices))
    tensors = {"index": torch.from_numpy(indices.astype(np.int64))}
    tensors.update({f"scale{k + 1}": torch.cat(parts) for k, parts in enumerate(per_scale)})
    with staged_directory(target, overwrite=overwrite) as staging:
        save_file(tensors, str(staging / TOKENS))
        write_json(
            staging / META,
            {
                "format": "mindhier-token-cache",
                "version": FORMAT_VERSION,
                "key": key,
                "tokenizer": tokenizer_identity,
                "images": fingerprint,
                "scales": list(tokenizer.cfg.scales),
                "n_images": len(indices),
            },
        )
    return TokenCache.open(target)
