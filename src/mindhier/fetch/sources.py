"""What `mindhier fetch` can download: every remote file with its origin, pin and verification rule.

Two origins:

* `hub`: a file of a Hugging Face repository (`repo_id`, `repo_type`, `filename`, `revision`), downloaded with
  `huggingface_hub` into its cache. The Hub publishes every large (LFS) file's sha256 as its etag, and the
  cache names the file's blob by that etag; a small file's etag is its git blob sha1. Both are checked
  against the bytes on disk, and against `sha256` when we pin one.
* `url`: a file at a fixed URL (torchvision's and SwAV's metric networks), downloaded with torch.hub's
  `download_url_to_file` into `<torch hub dir>/checkpoints`, the folder torchvision loads from. torch.hub's
  convention puts the first hex digits of the file's sha256 in its name (`alexnet-owt-7be5be79.pth`); that
  prefix is checked. A file without one (SwAV's) is checked against the full digest recorded for it in
  `metrics.metric_networks` (`PinnedNetwork.sha256`) — where one is recorded: none is published for SwAV
  (`SWAV_SHA256`), so until it is, its digest is only written to the fetch manifest.

Pins: `revision` is a branch or commit of the repository. The published repositories are read at `main`
(what MindEye2, Switti and open_clip themselves download); the exact commit and every file's sha256 are
recorded in the fetch manifest, and `mindhier fetch … --revision COMMIT` pins a later fetch to a recorded
commit. Files of a URL are pinned by their hash prefix or recorded digest. (No commit hashes can be read on a
machine without the Hub; a release that knows them should write them here.)
"""

from __future__ import annotations

from dataclasses import dataclass

from mindhier.published_weights import (
    HUB_WEIGHTS_FILE,
    SWITTI_REPO,
    SWITTI_VQVAE_FILE,
    SWITTI_VQVAE_REPO,
    VAR_REPO,
    VAR_VQVAE_FILE,
)

HUB_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch. `path` is where it lands relative to the destination (`--to`, or the cache)."""

    name: str  # what we call it in messages and the manifest
    origin: str  # "hub" | "url"
    path: str  # relative destination: the dataset layout (nsd), or the cache's own layout (weights)
    repo_id: str = ""
    repo_type: str = "model"  # "model" | "dataset"
    filename: str = ""  # inside the repository
    revision: str = "main"
    url: str = ""
    sha256: str | None = None  # the full digest, when pinned
    sha256_prefix: str | None = None  # torch.hub's name convention

    @property
    def source(self) -> str:
        """Where the file comes from, as a URL a user can open."""
        if self.origin == "url":
            return self.url
        kind = "datasets/" if self.repo_type == "dataset" else ""
        return f"{HUB_ENDPOINT}/{kind}{self.repo_id}/resolve/{self.revision}/{self.filename}"


# --------------------------------------------------------------------------------------------- MindEye2's NSD

MINDEYE2_REPO = "pscotti/mindeyev2"
# training sessions per NSD subject (NSD data paper; MindEye2 ships one train shard per session)
NSD_SESSIONS = {1: 40, 2: 40, 3: 32, 4: 30, 5: 40, 6: 32, 7: 40, 8: 30}


# ------------------------------------------------------------------------------------------------ weights

# the repositories and files of the published weights: `mindhier.published_weights`


def hub_cache_path(repo_id: str, repo_type: str, revision: str, filename: str) -> str:
    """A Hub file's path inside the Hugging Face cache (what `hf_hub_download` returns, relative to the cache)."""
    folder = f"{repo_type}s--{repo_id.replace('/', '--')}"
    return f"{folder}/snapshots/{revision}/{filename}"


def hub_weights(name: str, repo_id: str, filename: str, revision: str = "main", sha256: str | None = None):
    return RemoteFile(
        name=name,
        origin="hub",
        path=hub_cache_path(repo_id, "model", revision, filename),
        repo_id=repo_id,
        filename=filename,
        revision=revision,
        sha256=sha256,
    )


def nsd_files(
    subjects: list[int], sessions: int | None = None, with_old_test: bool = False, revision: str = "main"
) -> list[RemoteFile]:
    """Exactly the MindEye2 files the reader needs for `subjects`: betas, the train shards of the first
    `sessions` sessions (all by default), the new test shard (and the old one), the stimuli and captions."""
    from mindhier.data import layout
    from mindhier.errors import ConfigError

    def dataset_file(path: str) -> RemoteFile:
        return RemoteFile(
            name=path,
            origin="hub",
            path=path,
            repo_id=MINDEYE2_REPO,
            repo_type="dataset",
            filename=path,
            revision=revision,
        )

    files = []
    for subject in subjects:
        if subject not in NSD_SESSIONS:
            raise ConfigError(f"NSD has subjects 1-8, not {subject}; pass --subjects from 1..8")
        n = NSD_SESSIONS[subject] if sessions is None else sessions
        if not 1 <= n <= NSD_SESSIONS[subject]:
            raise ConfigError(
                f"NSD subject {subject} has {NSD_SESSIONS[subject]} training sessions, not {n}; "
                f"pass --sessions between 1 and {NSD_SESSIONS[subject]}"
            )
        files.append(dataset_file(layout.betas_name(subject)))
        shards = f"wds/subj{subject:02d}"
        files += [dataset_file(f"{shards}/{layout.SHARD_DIRS['train']}/{k}.tar") for k in range(n)]
        files.append(dataset_file(f"{shards}/{layout.SHARD_DIRS['test']}/0.tar"))
        if with_old_test:
            files.append(dataset_file(f"{shards}/{layout.SHARD_DIRS['test_old']}/0.tar"))
    files += [dataset_file(layout.NSD_IMAGES_HDF5), dataset_file(layout.NSD_CAPTIONS_NPY)]
    return files


def _clip_file(revision: str) -> RemoteFile:
    """The open_clip ViT-L-14 `openai` weights, as open_clip itself fetches them (its `hf_hub` copy, safetensors)."""
    import open_clip

    from mindhier.metrics.metric_networks import CLIP_MODEL, CLIP_TAG

    repo_id = open_clip.get_pretrained_cfg(CLIP_MODEL, CLIP_TAG)["hf_hub"].rstrip("/")
    return hub_weights("CLIP ViT-L/14 (OpenAI)", repo_id, "open_clip_model.safetensors", revision)


def _torchvision_files() -> list[RemoteFile]:
    from mindhier.metrics.metric_networks import PINNED

    return [
        RemoteFile(
            name=spec.network,
            origin="url",
            path=f"checkpoints/{spec.filename}",
            url=spec.url,
            sha256=spec.sha256,
            sha256_prefix=spec.published_sha256,
        )
        for spec in PINNED.values()
    ]


WEIGHT_GROUPS = ("teacher-clip", "switti", "var-vqvae", "metrics")


def weight_files(groups: list[str], revision: str = "main") -> list[RemoteFile]:
    """The files of the weight groups asked for (`all`: every group), each once."""
    from mindhier.errors import ConfigError

    chosen = list(WEIGHT_GROUPS) if "all" in groups else groups
    unknown = [g for g in chosen if g not in WEIGHT_GROUPS]
    if unknown:
        raise ConfigError(f"unknown weights {unknown[0]!r}; choose from {', '.join(WEIGHT_GROUPS)} or all")
    files: list[RemoteFile] = []
    for group in chosen:
        if group == "teacher-clip":
            files.append(_clip_file(revision))
        elif group == "switti":
            files.append(hub_weights("Switti-512 generator", SWITTI_REPO, HUB_WEIGHTS_FILE, revision))
            files.append(hub_weights("Switti's VQ-VAE", SWITTI_VQVAE_REPO, SWITTI_VQVAE_FILE, revision))
        elif group == "var-vqvae":
            files.append(hub_weights("VAR's VQ-VAE", VAR_REPO, VAR_VQVAE_FILE, revision))
        else:
            files += [*_torchvision_files(), _clip_file(revision)]
    unique = {f.source: f for f in files}
    return list(unique.values())
