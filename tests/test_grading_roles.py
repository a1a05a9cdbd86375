"""The grading roles (mtunet.study.roles): the mapping of the paper's grading sets onto the data
folder, duplicates, whole groups, stratified subsets and the leakage checks — on small record lists
and small data folders written here, and (realdata) on the real sets with the profiles' mapping."""
from __future__ import annotations

import collections
import dataclasses
import shutil
import zlib
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from mtunet.commands.run_notebooks import load_profile
from mtunet.data import load_data_root
from mtunet.data.eyepacs import balanced_downsample, split_by_patient
from mtunet.data.records import Record
from mtunet.errors import UserError
from mtunet.study import roles
from mtunet.study.parameters import DEFAULTS


def _rec(image_id, grade, source="aptos2019", patient=None, path=None):
    return Record(image_id, Path(path or f"/x/{source}/{image_id}.jpg"), grade, {}, "train",
                  patient or image_id, source, False)


# --- building blocks ------------------------------------------------------------------------------

def test_deduplicate_keeps_agreeing_copies_once_and_drops_conflicts():
    records = [_rec("a", 1), _rec("b", 1), _rec("c", 2), _rec("d", 3), _rec("e", 4), _rec("f", 0)]
    digests = {str(r.image_path): h for r, h in zip(records, "XXYYZW")}   # a=b (1,1), c=d (2,3)
    out = roles.deduplicate(records, digests)
    assert [r.image_id for r in out.records] == ["a", "e", "f"]
    assert out.copies_removed == 1 and [[r.image_id for r in g] for g in out.conflicts] == [["c", "d"]]


def test_split_groups_keeps_groups_whole_and_reproduces_split_by_patient():
    records = [_rec(f"{p}_{eye}", (p + (eye == "right")) % 5, "eyepacs", str(p))
               for p in range(40) for eye in ("left", "right")]
    split = roles.split_groups(records, 0.3, seed=3)
    sides = collections.defaultdict(set)
    for r in split:
        sides[r.patient_id].add(r.split)
    assert all(len(s) == 1 for s in sides.values())
    assert [r.split for r in split] == [r.split for r in split_by_patient(records, 0.3, seed=3)]
    with pytest.raises(UserError, match="grade_test_fraction"):
        roles.split_groups(records, 1.5, seed=0)


@pytest.mark.parametrize("sizes, n, expected", [
    ({0: 100, 1: 50, 2: 60, 3: 10, 4: 5}, 100, {0: 28, 1: 29, 2: 28, 3: 10, 4: 5}),
    ({0: 10, 1: 10}, 50, {0: 10, 1: 10}),
    ({0: 7, 1: 7, 2: 7}, 9, {0: 3, 1: 3, 2: 3}),
    ({0: 1000, 1: 3}, 4, {0: 2, 1: 2}),
    ({0: 1000, 1: 3}, 40, {0: 37, 1: 3}),
])
def test_equal_allocation(sizes, n, expected):
    assert roles.equal_allocation(sizes, n) == expected


def test_stratified_subset_takes_whole_groups_and_every_rare_positive():
    records = []
    for exam in range(200):                      # exams of two eyes; grade 4 rare
        worst = 4 if exam < 6 else 3 if exam < 20 else exam % 3
        records += [_rec(f"{exam}a", worst, "messidor-2", f"e{exam}"),
                    _rec(f"{exam}b", 0, "messidor-2", f"e{exam}")]
    subset = roles.stratified_subset(records, 100, seed=0)
    exams = collections.Counter(r.patient_id for r in subset)
    assert set(exams.values()) == {2}                           # no examination split
    assert 100 <= len(subset) <= 106
    grades = collections.Counter(r.grade for r in subset)
    assert grades[4] == 6 and grades[3] == 11      # all 6 grade-4 exams; grade 3 its equal share (22 images)
    assert roles.stratified_subset(records, None, 0) == records
    assert roles.stratified_subset(records, 10_000, 0) == records
    assert roles.stratified_subset(records, 100, seed=0) == subset           # seeded


def test_cap_per_grade():
    records = [_rec(str(i), i % 5) for i in range(100)]
    capped = roles.cap_per_grade(records, 7, seed=0)
    assert collections.Counter(r.grade for r in capped) == {g: 7 for g in range(5)}
    assert roles.cap_per_grade(records, None, 0) == records
    with pytest.raises(UserError):
        roles.cap_per_grade(records, 0, 0)


# --- small data folders ---------------------------------------------------------------------------

def _jpeg(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = zlib.crc32(key.encode())
    Image.new("RGB", (24, 24), (seed % 251, (seed >> 8) % 251, (seed >> 16) % 251)).save(path, quality=90)


def _add_aptos(root: Path, n: int = 100, copies=(("dupA", "dupB", 2, 2), ("badA", "badB", 1, 3))):
    """aptos2019/ with n images (grade i % 5) plus byte-identical pairs (id, id, grade, grade)."""
    rows = []
    for i in range(n):
        image_id = f"ap{i:04d}"
        _jpeg(root / "aptos2019" / "train_images" / f"{image_id}.jpg", image_id)
        rows.append(f"{image_id},{i % 5}")
    for a, b, ga, gb in copies:
        _jpeg(root / "aptos2019" / "train_images" / f"{a}.jpg", a)
        shutil.copy(root / "aptos2019" / "train_images" / f"{a}.jpg", root / "aptos2019" / "train_images" / f"{b}.jpg")
        rows += [f"{a},{ga}", f"{b},{gb}"]
    (root / "aptos2019" / "train.csv").write_text("id_code,diagnosis\n" + "\n".join(rows) + "\n")


def _add_messidor(root: Path, n_exams: int = 60):
    """messidor-2/ with n_exams examinations of two eyes (IM pairs 1 apart, exams 10 apart)."""
    rows = ["id_code,diagnosis,adjudicated_dme,adjudicated_gradable"]
    for e in range(n_exams):
        worst = e % 5
        for k, grade in enumerate((worst, max(0, worst - 1))):
            stem = f"IM{100000 + 10 * e + k:06d}"
            _jpeg(root / "messidor-2" / "images" / f"{stem}.jpg", stem)
            rows.append(f"{stem}.JPG,{grade},0,1")
    (root / "messidor-2" / "messidor_data.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def four_sets(tiny_synthetic_root, tmp_path) -> Path:
    """IDRiD + EyePACS (synthetic) + small APTOS and Messidor-2 folders."""
    root = Path(shutil.copytree(tiny_synthetic_root, tmp_path / "data"))
    _add_aptos(root)
    _add_messidor(root)
    return root


CPU_LIKE = dict(grading_train_sets=["aptos2019"], grading_train_per_grade=8, table3_set="messidor-2",
                table3_test_images=40, table4_set="eyepacs")


def test_the_cpu_mapping_on_small_folders(four_sets):
    splits = roles.build_splits(four_sets, 0.3, 0, True, None, **CPU_LIKE)
    assert splits.origins == {"grade_train": "aptos2019", "grade_test": "aptos2019",
                              "table3_test": "messidor-2", "table4_test": "eyepacs"}
    assert {r.source for r in splits["grade_train"] + splits["grade_test"]} == {"aptos2019"}
    assert collections.Counter(r.grade for r in splits["grade_train"]) == {g: 8 for g in range(5)}
    assert 40 <= len(splits["table3_test"]) <= 42
    assert len(splits["table4_test"]) == len(load_data_root(four_sets).eyepacs.records)
    assert all(r.split == "test" for role in ("table3_test", "table4_test") for r in splits[role])
    every = [r.image_id for role in roles.ROLES for r in splits[role]]
    assert "badA" not in every and "badB" not in every                  # conflicting copies dropped
    assert sum(i in ("dupA", "dupB") for i in every) <= 1               # agreeing copies kept once
    assert "1 byte-identical copies kept once" in splits.notes["grade_train"]
    assert "2 images in 1 identical-file groups with different grades dropped" in splits.notes["grade_train"]
    assert "IDRiD-D's role" in splits.notes["table3_test"] and "never saw" in splits.notes["table3_test"]
    assert splits.is_stand_in("table3_test") and splits.is_stand_in("table4_test")
    integrity = roles.split_integrity(splits)
    assert integrity["ok"].all(), integrity[~integrity["ok"]]
    assert len(integrity) == 2 + 3 * len(roles.GRADING_SIDES)


def test_defaults_keep_the_synthetic_layout(synthetic_root):
    p = {k: DEFAULTS[k] for k in ("grade_test_fraction", "split_seed", "balance_grades")}
    splits = roles.splits_from_parameters(synthetic_root, {**DEFAULTS, **p})
    eyepacs = load_data_root(synthetic_root).eyepacs.records
    expected = split_by_patient(balanced_downsample(eyepacs, seed=0), 0.3, seed=0)
    assert [r.image_id for r in splits["grade_train"]] == [r.image_id for r in expected if r.split == "train"]
    assert [r.image_id for r in splits["grade_test"]] == [r.image_id for r in expected if r.split == "test"]
    assert splits.origins["table3_test"] == "idrid-grading" and splits["table3_test"]
    assert not splits.is_stand_in("table3_test")
    assert splits["table4_test"] == [] and "no external graded set" in splits.notes["table4_test"]
    assert roles.grading_test_set(splits) == ("table3_test", splits["table3_test"])
    assert roles.split_integrity(splits)["ok"].all()


def test_absent_sets_fall_back_and_say_so(synthetic_root):
    splits = roles.build_splits(synthetic_root, **CPU_LIKE)
    assert {r.source for r in splits["grade_train"]} == {"eyepacs"}
    assert "aptos2019 not in the data folder: fell back to eyepacs" in splits.notes["grade_train"]
    assert splits.origins["table3_test"] == "idrid-grading"
    assert "messidor-2 not in the data folder: fell back" in splits.notes["table3_test"]
    # Table 4 = EyePACS, the training set here: only the patients the pool left (none after balancing?)
    assert all(roles.group_of(r) not in {roles.group_of(t) for t in splits["grade_train"] + splits["grade_test"]}
               for r in splits["table4_test"])
    assert roles.split_integrity(splits)["ok"].all()


def test_smoke_profile_exercises_table4(synthetic_root):
    params = {**DEFAULTS, **load_profile("smoke")["parameters"]}
    splits = roles.splits_from_parameters(synthetic_root, params)
    assert splits["table4_test"] and splits.origins["table4_test"] == "grade_test"
    assert splits["table4_test"] == splits["grade_test"]


def test_same_set_for_both_tables_gives_disjoint_subsets(four_sets):
    splits = roles.build_splits(four_sets, grading_train_sets=["aptos2019"], table3_set="messidor-2",
                                table3_test_images=30, table4_set="messidor-2")
    three, four = splits["table3_test"], splits["table4_test"]
    assert three and four and len(three) + len(four) == 120
    assert not {roles.group_of(r) for r in three} & {roles.group_of(r) for r in four}
    assert roles.split_integrity(splits)["ok"].all()


def test_external_folder_takes_table4(four_sets, tmp_path):
    external = Path(shutil.copytree(four_sets / "messidor-2", tmp_path / "other" / "messidor-2"))
    splits = roles.build_splits(four_sets, external_grading_dir=str(external), table4_set="eyepacs",
                                grading_train_sets=["aptos2019"])
    assert splits.origins["table4_test"] == "external" and len(splits["table4_test"]) == 120
    assert "overrides table4_set = 'eyepacs'" in splits.notes["table4_test"]


def test_bad_choices_are_errors(synthetic_root):
    with pytest.raises(UserError, match="grading_train_sets"):
        roles.build_splits(synthetic_root, grading_train_sets=["kaggle"])
    with pytest.raises(UserError, match="table3_set"):
        roles.build_splits(synthetic_root, table3_set="idrid")


def test_split_integrity_catches_examinations_and_copies(four_sets):
    splits = roles.build_splits(four_sets, 0.3, 0, True, None, **CPU_LIKE)
    exam = splits["table3_test"][0]
    fellow = next(r for r in load_data_root(four_sets).messidor.records
                  if r.patient_id == exam.patient_id and r.image_id != exam.image_id)
    leaky = dataclasses.replace(splits, roles={**splits.roles, "grade_train": splits["grade_train"] + [fellow]})
    table = roles.split_integrity(leaky).set_index("check")
    assert not table.loc["grading: no patient / examination in both grade_train and table3_test", "ok"]
    copy = dataclasses.replace(splits["table4_test"][0], image_id="renamed", source="aptos2019")
    leaky = dataclasses.replace(splits, roles={**splits.roles, "grade_train": splits["grade_train"] + [copy]})
    table = roles.split_integrity(leaky).set_index("check")
    assert not table.loc["grading: no file content in both grade_train and table4_test", "ok"]
    assert table.loc["grading: no image in both grade_train and table4_test", "ok"]


def test_save_and_load_keep_roles_notes_and_origins(four_sets, tmp_path):
    splits = roles.build_splits(four_sets, 0.3, 0, True, None, **CPU_LIKE)
    roles.save_splits(splits, tmp_path, four_sets)
    back, data_dir = roles.load_splits(tmp_path)
    assert data_dir == four_sets.resolve()
    for role in roles.ROLES:
        assert [r.image_id for r in back[role]] == [r.image_id for r in splits[role]]
    assert back.origins == splits.origins and back.notes == splits.notes
    frame = (tmp_path / roles.SPLITS_FILE).read_text().replace("table3_test", "idrid_grading_test")
    (tmp_path / roles.SPLITS_FILE).write_text(frame)
    with pytest.raises(UserError, match="rerun notebook 01"):
        roles.load_splits(tmp_path)


def test_seeded_subset_is_deterministic_and_checks_its_limit():
    records = [_rec(f"IDRiD_{i:02d}", None, source="idrid-segmentation") for i in range(1, 55)]
    subset = roles.seeded_subset(records, 5, seed=0, name="seg_train_images")
    assert len(subset) == 5 and subset == roles.seeded_subset(records, 5, 0, "x")
    reordered = roles.seeded_subset(records[::-1], 5, seed=0, name="x")     # chosen by id, not
    assert {r.key for r in reordered} == {r.key for r in subset}           # by position
    assert [r for r in records if r in subset] == subset                   # order kept
    assert subset != records[:5]                                           # not the first patients
    assert roles.seeded_subset(records, 5, seed=1, name="x") != subset     # the seed decides
    assert roles.seeded_subset(records, None, 0, "x") == records
    assert roles.seeded_subset(records, 100, 0, "x") == records
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(UserError, match="seg_test_images must be a whole number"):
            roles.seeded_subset(records, bad, 0, "seg_test_images")


def test_image_limits_cut_each_role_and_nothing_else(four_sets):
    full = roles.build_splits(four_sets, 0.3, 0, True, None, **CPU_LIKE)
    limits = dict(seg_train_images=1, seg_test_images=1, grade_train_images=3, grade_test_images=5)
    mini = roles.build_splits(four_sets, 0.3, 0, True, None, **CPU_LIKE, **limits)
    assert len(mini["seg_train"]) == 1 < len(full["seg_train"])
    assert {r.key for r in mini["seg_train"]} <= {r.key for r in full["seg_train"]}
    assert "seeded subset of 1 of its 2 images" in mini.notes["seg_train"]
    assert mini["seg_test"] == full["seg_test"]                            # 1 of 1: all of it
    assert "seeded subset" not in mini.notes["seg_test"]
    assert len(mini["grade_test"]) == 5 < len(full["grade_test"])
    assert sorted(r.grade for r in mini["grade_test"]) == [0, 1, 2, 3, 4]  # stratified
    assert {r.key for r in mini["grade_test"]} <= {r.key for r in full["grade_test"]}
    assert "stratified subset of 5 of its" in mini.notes["grade_test"]
    assert len({r.grade for r in mini["grade_train"]}) == 3 == len(mini["grade_train"])
    assert {r.key for r in mini["grade_train"]} <= {r.key for r in full["grade_train"]}
    assert "; stratified subset of 3 of its 40 images" in mini.notes["grade_train"]
    for role in ("table3_test", "table4_test"):                            # the images left out
        assert mini[role] == full[role], role                              # stay out
    again = roles.build_splits(four_sets, 0.3, 0, True, None, **CPU_LIKE, **limits)
    assert all(again[role] == mini[role] for role in roles.ROLES)          # seeded
    assert roles.split_integrity(mini)["ok"].all()


def test_image_limits_come_from_the_parameters(four_sets):
    params = {**DEFAULTS, **CPU_LIKE, "seg_train_images": 1, "grade_train_images": 2,
              "grade_test_images": 5}
    splits = roles.splits_from_parameters(four_sets, params)
    assert len(splits["seg_train"]) == 1 and len(splits["grade_test"]) == 5
    assert len(splits["grade_train"]) == 2


# --- the real data, with the profiles' mapping ----------------------------------------------------

@pytest.mark.realdata
@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_real_roles_of_the_profiles(real_messidor_dir, real_aptos_dir, real_eyepacs_dir, profile):
    data = real_messidor_dir.parent
    params = {**DEFAULTS, **load_profile(profile)["parameters"]}
    splits = roles.splits_from_parameters(data, params)
    assert splits.origins == {"grade_train": "aptos2019", "grade_test": "aptos2019",
                              "table3_test": "messidor-2", "table4_test": "eyepacs"}
    assert not any("fell back" in note for note in splits.notes.values())
    train = collections.Counter(r.grade for r in splits["grade_train"])
    # the paper's rule: every grade downsampled to grade 4's count; APTOS has fewer of grade 3
    assert set(train) == set(range(5)) and max(train.values()) == train[4]
    assert all(n == train[4] for g, n in train.items() if g != 3) and train[3] <= train[4]
    # APTOS: 96 extra copies kept once, 62 images in 30 conflicting groups dropped (data check)
    assert "96 byte-identical copies kept once" in splits.notes["grade_train"]
    assert "62 images in 30 identical-file groups with different grades dropped" in splits.notes["grade_train"]
    three = splits["table3_test"]
    grades = collections.Counter(r.grade for r in three)
    if profile == "cpu":
        assert len(three) >= 300
        assert grades[4] == 35 and grades[3] >= 50          # every grade-4 image, rare grades enriched
    else:
        assert len(three) == 1740                            # Messidor-2 minus 4 duplicate copies
    exams = collections.Counter(r.patient_id for r in three)
    every = collections.Counter(r.patient_id for r in load_data_root(data).messidor.records)
    assert all(exams[e] == every[e] or exams[e] == every[e] - 1 for e in exams)   # whole (up to a dropped copy)
    assert len(splits["table4_test"]) == 130
    integrity = roles.split_integrity(splits)
    assert integrity["ok"].all(), integrity[~integrity["ok"]]


@pytest.mark.realdata
def test_real_roles_of_the_miniature(real_messidor_dir, real_aptos_dir, real_eyepacs_dir, real_idrid_dir):
    """profiles/paper-miniature.yaml on the real data: the paper profile's mapping, a few images
    per role, one per grade where a table needs every grade, no leakage."""
    data = real_messidor_dir.parent
    splits = roles.splits_from_parameters(data, {**DEFAULTS, **load_profile("paper-miniature")["parameters"]})
    assert splits.origins == {"grade_train": "aptos2019", "grade_test": "aptos2019",
                              "table3_test": "messidor-2", "table4_test": "eyepacs"}
    # Messidor-2 examinations and EyePACS patients are two eyes, kept whole: one per worst grade
    assert {role: len(splits[role]) for role in roles.ROLES} == {
        "seg_train": 1, "seg_test": 2, "grade_train": 3, "grade_test": 5, "table3_test": 10, "table4_test": 9}
    assert sorted(r.grade for r in splits["grade_test"]) == [0, 1, 2, 3, 4]
    for role in ("table3_test", "table4_test"):
        assert {r.grade for r in splits[role]} == {0, 1, 2, 3, 4}, role
    assert all(r.has_masks for r in splits["seg_train"] + splits["seg_test"])
    assert roles.split_integrity(splits)["ok"].all()


# --- Tables 3 and 4 end to end (tiny: 32-px graders, one epoch, eager) ------------------------------

def test_tables3_4_on_small_folders(four_sets, tmp_path):
    from mtunet.report.claims import claims_table
    from mtunet.study.runs import Context
    from mtunet.study.tables3_4_grading import tables3_4

    splits = roles.build_splits(four_sets, 0.3, 0, True, None, grading_train_sets=["aptos2019"],
                                grading_train_per_grade=1, table3_set="messidor-2", table3_test_images=10,
                                table4_set="eyepacs")
    ctx = Context.from_parameters({**DEFAULTS, "profile": "test", "runs_dir": str(tmp_path / "runs"),
                                   "image_size": 32, "epochs": 1, "run_eagerly": True,
                                   "encoder_weights": "random", "augment": False})
    train = [dataclasses.replace(r, has_masks=True) for r in splits["grade_train"]]   # empty masks
    results = tmp_path / "results"
    results.mkdir()
    out = tables3_4(ctx, splits, train, train, ["nasnet_mobile"], seeds=[0], grading_seeds=[0],
                    grader_image_size=32, results=results)
    for table in (out.table3, out.table4):
        ours = table.dropna(subset=["ours_mean"])
        assert set(ours["network"]) == {"NASNet (mobile)", "MTUnet"}
        assert {"ci_low", "ci_high", "n_positive", "kappa", "accuracy", "one_class"} <= set(table.columns)
        assert (ours["n_test"] == len(splits["table3_test"] if table is out.table3 else splits["table4_test"])).all()
        assert (ours["encoder_init"] == "random").all()      # every row says how it started
    assert out.table3["test_set"].iloc[0].startswith("table3_test (stand-in for IDRiD-D): Messidor-2")
    assert set(out.summary["test_set"]) == {"table3_test", "table4_test", "grade_test"}
    assert (out.summary["encoder_init"] == "random").all(), out.summary[["network", "encoder_init"]]
    assert (results / "table3_grading_internal.csv").exists() and (results / "grading_summary.csv").exists()
    from mtunet import paper

    claims = claims_table(results).set_index(pd.Index([c["id"] for c in paper.CLAIMS]))
    for claim in ("mtunet_best_grading_idrid", "mtunet_best_grading_sidrp"):
        assert claims.loc[claim, "evidence"].startswith("tested on a stand-in for")


def test_grade_only_keeps_the_grades_and_drops_the_decoder():
    import keras
    import numpy as np

    from mtunet.study.runs import grade_loader, grade_only

    inp = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", name="enc")(inp)
    seg = keras.layers.Conv2D(5, 1, name="dec")(features)
    grade = keras.layers.Dense(5, activation="softmax", name="head")(keras.layers.GlobalMaxPooling2D()(features))
    model = keras.Model(inp, {"seg": seg, "grade": grade})
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    part = grade_only(model)
    assert "dec" not in [layer.name for layer in part.layers]
    np.testing.assert_allclose(part.predict_on_batch(x)["grade"], model.predict_on_batch(x)["grade"], rtol=1e-6)
    grader = keras.Model(inp, {"grade": grade})
    assert grade_only(grader) is grader
    calls = []
    load = grade_loader(lambda: calls.append(1) or model)
    assert load() is load() and calls == [1]


def test_a_graders_run_does_not_depend_on_the_segmentation_recipe(tmp_path):
    """Graders ignore the segmentation loss and the crop settings, so changing those reuses the
    graders' cached runs instead of retraining them."""
    from mtunet.study.runs import Context
    from mtunet.study.tables3_4_grading import grader_spec

    def grader_run_id(**recipe):
        ctx = Context.from_parameters({**DEFAULTS, "profile": "test", "runs_dir": str(tmp_path),
                                       "image_size": 32, **recipe})
        return grader_spec(ctx, "nasnet_mobile", 0).run_id([])

    plain = grader_run_id()
    assert grader_run_id(seg_loss="dice_focal", lesion_share=0.5, work_size=64, patch_size=32,
                         steps_per_epoch=7) == plain
    assert grader_run_id(learning_rate=1e-2) != plain
