"""Whole-image grade inputs through the run's grade preprocessing (Graham's normalisation): in
training batches, in scoring, in the probe's features and in predict; prepared once on disk."""
from __future__ import annotations

import numpy as np
import pytest

from mtunet.data import read_segmentation
from mtunet.data.fundus_normalise import normalise_square
from mtunet.data.pipeline import FundusSequence, grade_arrays, preprocess_grade_inputs
from mtunet.data.preprocess import load_arrays
from mtunet.errors import UserError


@pytest.fixture(scope="module")
def records(synthetic_root):
    import dataclasses

    recs = [r for r in read_segmentation(synthetic_root / "IDRiD") if r.split == "train"][:4]
    return [dataclasses.replace(r, grade=i % 5) for i, r in enumerate(recs)]


def test_graham_batches_are_the_normalised_model_inputs_and_none_leaves_them(records):
    raw = load_arrays(records, 64, progress=False)[0]
    graham = FundusSequence(records, 64, batch_size=4, outputs=("grade",), preprocessing="graham")
    plain = FundusSequence(records, 64, batch_size=4, outputs=("grade",))
    np.testing.assert_array_equal(plain[0][0], raw.astype(np.float32))
    expected = np.stack([normalise_square(im) for im in raw]).astype(np.float32)
    np.testing.assert_array_equal(graham[0][0], expected)
    assert not np.array_equal(graham[0][0], plain[0][0])
    with pytest.raises(UserError, match="grade_preprocessing"):
        FundusSequence(records, 64, preprocessing="clahe")
    assert preprocess_grade_inputs(raw, "none") is raw


def test_grade_arrays_are_prepared_once_and_read_back(records, tmp_path, monkeypatch):
    images, grades = grade_arrays(records, 64, "graham", cache_dir=tmp_path, progress=False)
    assert images.dtype == np.uint8 and grades.tolist() == [r.grade for r in records]
    assert len(list(tmp_path.glob("grade-inputs-*.npz"))) == 1
    import mtunet.data.pipeline as pipeline

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(pipeline, "load_arrays", no_decoding)
    again, _ = grade_arrays(records, 64, "graham", cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again, images)
    with pytest.raises(AssertionError, match="decoded again"):     # other settings: not the file
        grade_arrays(records, 64, "none", cache_dir=tmp_path, progress=False)


def test_a_torn_cache_file_is_prepared_again(records, tmp_path):
    images, _ = grade_arrays(records, 32, "graham", cache_dir=tmp_path, progress=False)
    path = next(tmp_path.glob("grade-inputs-*.npz"))
    path.write_bytes(path.read_bytes()[:100])
    again, _ = grade_arrays(records, 32, "graham", cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(again, images)


def test_runs_and_predict_agree_on_the_preprocessing():
    from mtunet.commands.predict import grade_preprocessing
    from mtunet.study.run_training import grade_preprocessing_of
    from mtunet.study.runs import RunSpec

    assert grade_preprocessing_of(RunSpec("densenet201", grade_preprocessing="graham")) == "graham"
    assert grade_preprocessing_of(RunSpec("variant_b", grade_preprocessing="graham")) == "none"
    with pytest.raises(UserError, match="grade_preprocessing"):
        grade_preprocessing_of(RunSpec("mtunet", grade_preprocessing="clahe"))
    assert grade_preprocessing({"spec": {"model": "nasnet_mobile", "grade_preprocessing": "graham"}}) == "graham"
    assert grade_preprocessing({"spec": {"model": "variant_b", "grade_preprocessing": "graham"}}) == "none"
    assert grade_preprocessing({}) == "none"                        # a run recorded before it
