"""The plain grading recipe the graders are held against (grading_probe)."""
import numpy as np

from mtunet.metrics import roc_auc_per_grade
from mtunet.study import grading_probe


def _features(n_per_grade, grades=range(5), signal=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(list(grades), n_per_grade)
    x = rng.normal(size=(len(y), 20))
    x[np.arange(len(y)), y] += signal           # feature g marks grade g
    return x, y


def test_a_probe_learns_a_grade_the_features_carry_and_not_one_they_do_not():
    x, y = _features(20)
    probe = grading_probe.fit_probe(x, y)
    xt, yt = _features(20, seed=1)
    assert roc_auc_per_grade(yt, grading_probe.probability_of_every_grade(probe, xt)).mean() > 0.85
    noise, _ = _features(20, signal=0.0, seed=2)
    probe = grading_probe.fit_probe(noise, y)
    chance = roc_auc_per_grade(yt, grading_probe.probability_of_every_grade(probe, _features(20, signal=0.0, seed=3)[0]))
    assert abs(chance.mean() - 0.5) < 0.15


def test_regularisation_is_chosen_on_the_training_images_only():
    """Cross-validated C over the grid, folds limited by the rarest grade; with one image of a
    grade, a fixed C (no folds to cross-validate on)."""
    x, y = _features(3)
    probe = grading_probe.fit_probe(x, y)
    classifier = probe[-1]
    assert classifier.cv.get_n_splits() == 3 and classifier.C_[0] in grading_probe.C_GRID
    x, y = _features(1)
    assert grading_probe.fit_probe(x, y)[-1].C == grading_probe.C_GRID[6]


def test_a_grade_missing_from_training_gets_zero_probability():
    x, y = _features(10, grades=(0, 2, 4))
    prob = grading_probe.probability_of_every_grade(grading_probe.fit_probe(x, y), x)
    assert prob.shape == (30, 5) and np.allclose(prob[:, [1, 3]], 0) and np.allclose(prob.sum(1), 1)


def test_probe_scores_are_cached_per_training_and_test_images(tmp_path, monkeypatch):
    from mtunet.data.records import Record

    def record(i, grade):
        return Record(image_id=f"im{i}", image_path=tmp_path / f"im{i}.jpg", grade=grade,
                      split="train", source="aptos2019")

    train = [record(i, i % 5) for i in range(10)]
    test = {"grade_test": [record(20 + i, i % 5) for i in range(5)], "empty": []}
    calls = []

    def fake_features(extractor, records, image_size, batch_size=8, preprocessing="none"):
        calls.append(len(records))
        return np.array([[r.grade + 0.1 * k for k in range(3)] for r in records], float)

    monkeypatch.setattr(grading_probe, "feature_extractor", lambda size, weights: (None, "random"))
    monkeypatch.setattr(grading_probe, "pooled_features", fake_features)
    first, used = grading_probe.probe_evaluations(train, test, 32, "random", tmp_path / "runs")
    assert list(first) == [(grading_probe.PROBE, 0, "grade_test")] and used == "random"
    again, used = grading_probe.probe_evaluations(train, test, 32, "random", tmp_path / "runs")
    assert calls == [10, 5] and used == "random"                     # read back, not recomputed
    ev, cached = first[(grading_probe.PROBE, 0, "grade_test")], again[(grading_probe.PROBE, 0, "grade_test")]
    assert np.allclose(ev.prob, cached.prob) and ev.image_ids == cached.image_ids
