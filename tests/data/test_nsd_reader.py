import io

import h5py
import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from mindhier.config import DataConfig
from mindhier.data import layout
from mindhier.data.nsd import open_dataset
from mindhier.errors import DataError


def _betas(root, subject):
    with h5py.File(layout.betas_path(root, subject)) as f:
        return f["betas"][:]


def test_reader_recovers_what_the_simulator_wrote(tiny_dataset):
    cfg, result = tiny_dataset
    with open_dataset(result.root) as dataset:
        assert dataset.subjects == (1, 2)
        for subject in (1, 2):
            design = result.subjects[subject].design
            betas = _betas(result.root, subject)

            test = dataset.split(subject, "test")
            np.testing.assert_array_equal(test.image_index_N, np.sort(result.test_images))
            expected = np.stack([betas[design.image_T == i].mean(0) for i in test.image_index_N])
            np.testing.assert_allclose(test.voxels(), expected, rtol=1e-5, atol=1e-6)
            assert test.voxels_per_repeat().shape == (len(test), cfg.simulator.test_repeats, betas.shape[1])

            separate = dataset.split(subject, "test", repetitions="separate")
            assert len(separate) == cfg.simulator.n_test * cfg.simulator.test_repeats
            rows = np.concatenate(separate.rows_N)
            np.testing.assert_array_equal(separate.voxels(), betas[rows])
            np.testing.assert_array_equal(design.image_T[rows], separate.image_index_N)

            train, val = dataset.split(subject, "train"), dataset.split(subject, "val")
            assert len(val) == round(0.05 * cfg.simulator.n_train)
            assert not set(train.image_index_N) & set(val.image_index_N)
            assert set(train.image_index_N) | set(val.image_index_N) == set(result.train_images.tolist())
            items = np.array([0, 5, len(train) - 1])
            train_rows = np.concatenate([train.rows_N[i] for i in items])
            np.testing.assert_array_equal(train.voxels(items), betas[train_rows])
            np.testing.assert_array_equal(design.image_T[train_rows], train.image_index_N[items])
        # the val images are the same for every subject (chosen by the split seed, not the subject)
        np.testing.assert_array_equal(dataset.val_images(1), dataset.val_images(2))


def test_images_captions_and_roi_subsets(tiny_dataset):
    _, result = tiny_dataset
    with open_dataset(result.root) as dataset:
        test = dataset.split(1, "test")
        images = test.images([0, 3])
        png = np.asarray(Image.open(layout.image_png_path(result.root, int(test.image_index_N[3]))))
        np.testing.assert_array_equal(images[1], png)
        captions = np.load(result.root / layout.CAPTIONS_NPY)
        assert test.captions([0]) == [str(captions[test.image_index_N[0], 0])]

        v1 = dataset.split(1, "test", rois=["V1"])
        labels = np.asarray(result.subjects[1].model.roi_labels())
        np.testing.assert_array_equal(v1.voxels([0])[0], test.voxels([0])[0][labels == "V1"])
        with pytest.raises(DataError, match="unknown ROI 'V9'; available: V1, V2"):
            dataset.split(1, "test", rois=["V9"])


def test_val_split_follows_its_seed(tiny_dataset):
    _, result = tiny_dataset
    a = open_dataset(result.root, DataConfig(split_seed=0)).val_images(1)
    b = open_dataset(result.root, DataConfig(split_seed=1)).val_images(1)
    assert len(a) == len(b) and not np.array_equal(a, b)


def test_expected_voxel_count_is_checked(tiny_dataset):
    _, result = tiny_dataset
    n = result.subjects[1].model.n_voxels
    with pytest.raises(DataError, match=f"subject 1: betas have {n} voxels but the model expects {n + 1}"):
        open_dataset(result.root, subjects=[1], expected_voxels={1: n + 1})


# ----------------------------------------------------------------------- MindEye2's real form (fixture)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _behav(image, row, session):
    behav = np.full((1, 17), -1.0)  # MindEye2 stores -1 for NaN; floats here, as a cautious reader must accept
    behav[0, [0, 1, 2, 5]] = image, 1, session, row
    return behav


def _write_shard(path, trials):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wds.TarWriter(str(path)) as sink:
        for image, row, session in trials:
            sink.write({"__key__": f"s{row:06d}", "behav.npy": _npy(_behav(image, row, session))})


@pytest.fixture
def mindeye2_root(tmp_path):
    """A tiny dataset in the published MindEye2 form: images in one HDF5 array, COCO captions, no manifest.

    Test images 5 (3 repetitions), 9 (2) and 12 (1); one train trial of image 9 sits in a train shard.
    """
    rng = np.random.default_rng(0)
    n_images, n_voxels = 20, 30
    test_trials = [(5, 0, 1), (9, 1, 1), (5, 2, 1), (12, 3, 2), (9, 4, 2), (5, 5, 2)]
    train_trials = [(i, 6 + k, 1 + k % 2) for k, i in enumerate([0, 1, 2, 3, 4, 6, 7, 8, 10, 11])]
    train_trials.append((9, 16, 2))  # a test image inside a train shard: must never reach train/val
    betas = rng.standard_normal((17, n_voxels)).astype(np.float32)
    with h5py.File(tmp_path / "betas_all_subj01_fp32_renorm.hdf5", "w") as f:
        f["betas"] = betas
    _write_shard(tmp_path / "wds/subj01/new_test/0.tar", test_trials)
    _write_shard(tmp_path / "wds/subj01/train/0.tar", [t for t in train_trials if t[2] == 1])
    _write_shard(tmp_path / "wds/subj01/train/1.tar", [t for t in train_trials if t[2] == 2])
    images = rng.random((n_images, 3, 16, 16)).astype(np.float16)
    with h5py.File(tmp_path / layout.NSD_IMAGES_HDF5, "w") as f:
        f["images"] = images
    captions = np.array([[f"caption {i}.{k}" for k in range(5)] for i in range(n_images)])
    np.save(tmp_path / layout.NSD_CAPTIONS_NPY, captions)
    return tmp_path, betas, images


def test_reads_mindeye2_published_form(mindeye2_root):
    root, betas, images = mindeye2_root
    with open_dataset(root, DataConfig(val_fraction=0.2)) as dataset:
        assert dataset.manifest is None and dataset.images.kind == "hdf5"
        recording = dataset.recording(1)
        assert recording.n_voxels == 30 and recording.roi_labels is None
        assert recording.dropped_train_trials == 1

        test = dataset.split(1, "test")
        np.testing.assert_array_equal(test.image_index_N, [5, 9, 12])
        expected = np.stack(
            [
                betas[[0, 2, 5]].mean(0),
                betas[[1, 1, 4]].mean(0),  # MindEye2 duplicates missing repeats: [a, b] -> [a, a, b]
                betas[[3, 3, 3]].mean(0),
            ]
        )
        np.testing.assert_allclose(test.voxels(), expected, rtol=1e-6)
        assert [len(r) for r in dataset.split(1, "test", repetitions="separate").rows_N] == [1] * 6

        train_images = set(dataset.split(1, "train").image_index_N) | set(dataset.split(1, "val").image_index_N)
        assert train_images == {0, 1, 2, 3, 4, 6, 7, 8, 10, 11}  # image 9 (a test image) dropped
        assert len(dataset.split(1, "val")) == 2

        loaded = test.images()
        np.testing.assert_array_equal(loaded[1], np.rint(images[9].astype(np.float32).transpose(1, 2, 0) * 255))
        assert test.captions() == ["caption 5.0", "caption 9.0", "caption 12.0"]
        with pytest.raises(DataError, match="no per-voxel ROI labels"):
            dataset.split(1, "test", rois=["V1"])
        with pytest.raises(DataError, match="no test_old split"):
            dataset.split(1, "test_old")


def test_reads_the_old_test_split_when_present(mindeye2_root):
    root, betas, _ = mindeye2_root
    _write_shard(root / "wds/subj01/test/0.tar", [(13, 7, 1), (13, 8, 1)])
    with open_dataset(root) as dataset:
        old = dataset.split(1, "test_old")
        np.testing.assert_array_equal(old.image_index_N, [13])
        np.testing.assert_allclose(old.voxels()[0], betas[[7, 7, 8]].mean(0), rtol=1e-6)


def test_betas_are_read_lazily(mindeye2_root):
    root, _, _ = mindeye2_root
    dataset = open_dataset(root)
    betas_file = dataset.recording(1).betas
    assert betas_file._file is not None  # opened once for the finiteness scan ...
    betas_file.close()
    assert betas_file._file is None
    dataset.split(1, "test")  # ... building a split reads no betas
    assert betas_file._file is None
    dataset.split(1, "test").voxels([0])
    assert betas_file._file is not None


def test_a_split_is_parsed_once_and_read_again_when_a_shard_changes(tmp_path):
    from mindhier.data.nsd.shards import read_trials

    folder = tmp_path / "wds/subj01/train"
    _write_shard(folder / "0.tar", [(0, 0, 1), (1, 1, 1)])
    first = read_trials(folder)
    assert read_trials(folder) is first  # the same parsed table, not a second parse
    with pytest.raises(ValueError):
        first.image_T[0] = 7  # shared tables are read-only
    _write_shard(folder / "0.tar", [(4, 0, 1), (5, 1, 1), (6, 2, 2)])  # rewritten in place
    _write_shard(folder / "1.tar", [(8, 3, 2)])  # and a shard added
    again = read_trials(folder)
    assert again.image_T.tolist() == [4, 5, 6, 8] and again.session_T.tolist() == [1, 1, 2, 2]
