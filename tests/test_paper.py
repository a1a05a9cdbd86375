"""The paper's published numbers: shapes, spot values, claims and long-form frames."""
from mtunet import paper
from mtunet.config import GRADE_NAMES
from mtunet.models.registry import MODELS, label

COLUMNS = ["model", "network", "paper_mean", "paper_std"]


def test_table1():
    assert set(paper.TABLE1_VARIANTS) == {"variant_a", "variant_b", "mtunet"}
    assert paper.TABLE1_VARIANTS["variant_a"] == {"dice": 55.37, "roc": 86.27}
    assert paper.TABLE1_VARIANTS["mtunet"] == {"dice": 76.12, "roc": 89.45}
    f = paper.table1_frame()
    assert len(f) == 6 and list(f.columns) == ["model", "network", "metric", "paper_mean", "paper_std"]
    assert set(f["network"]) == {"Variant A", "Variant B", "Variant C"}


def test_table2():
    t = paper.TABLE2_SEGMENTATION
    assert list(t) == ["unet", "linknet", "fpn", "deeplabv3", "mtunet"]
    assert t["mtunet"]["red"] == (75.15, 0.778)
    assert t["linknet"]["yellow"] == (83.54, 0.19)
    assert all(set(v) == {"red", "yellow"} for v in t.values())
    f = paper.table2_frame()
    assert f.shape == (10, 5)
    best = f.loc[f.groupby("metric")["paper_mean"].idxmax(), "network"]
    assert set(best) == {label("mtunet")}  # the claim "MTUnet beats each baseline" holds in the data


def test_tables3_and_4():
    for table, frame in ((paper.TABLE3_GRADING_IDRID, paper.table3_frame()),
                         (paper.TABLE4_GRADING_SIDRP, paper.table4_frame())):
        assert list(table) == ["nasnet_large", "densenet201", "resnext101", "inception_resnet_v2",
                               "mtunet"]
        assert all(tuple(v) == GRADE_NAMES for v in table.values())
        assert frame.shape == (25, 5) and "grade" in frame.columns
        best = frame.loc[frame.groupby("grade")["paper_mean"].idxmax(), "model"]
        assert set(best) == {"mtunet"}
    assert paper.TABLE3_GRADING_IDRID["mtunet"]["No DR"] == (99.00, 0.330)
    assert paper.TABLE3_GRADING_IDRID["densenet201"]["Proliferative"] == (36.83, 12.78)
    assert paper.TABLE4_GRADING_SIDRP["mtunet"]["Moderate"] == (84.75, 1.875)
    assert paper.TABLE4_GRADING_SIDRP["densenet201"]["Severe"] == (57.47, 16.385)


def test_every_paper_row_is_a_registry_model():
    for table in (paper.TABLE1_VARIANTS, paper.TABLE2_SEGMENTATION, paper.TABLE3_GRADING_IDRID,
                  paper.TABLE4_GRADING_SIDRP):
        assert set(table) <= set(MODELS)


def test_claims_and_constants():
    ids = [c["id"] for c in paper.CLAIMS]
    assert len(ids) == len(set(ids)) >= 8
    assert all(c["text"] and c["source"] for c in paper.CLAIMS)
    assert paper.claim("kaggle_1914_per_grade")["source"].startswith("Performance Study")
    assert paper.KAGGLE_IMAGES_PER_GRADE == 1914 and paper.SIGNIFICANCE_LEVEL == 0.10
    assert paper.claims_frame().shape == (len(ids), 3)
