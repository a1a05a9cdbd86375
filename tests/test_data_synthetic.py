from __future__ import annotations

import time

import numpy as np
from PIL import Image

from mtunet.cli import main
from mtunet.data.synthetic import synth_fundus, write_synthetic


def test_layout_and_formats(synthetic_root):
    seg = synthetic_root / "IDRiD" / "A. Segmentation"
    assert (seg / "1. Original Images" / "a. Training Set" / "IDRiD_01.jpg").is_file()
    mask = seg / "2. All Segmentation Groundtruths" / "a. Training Set" / "1. Microaneurysms" / "IDRiD_01_MA.tif"
    im = Image.open(mask)
    assert im.mode == "P" and set(np.unique(np.asarray(im))) <= {0, 1} and im.getpalette()[3:6] == [255, 0, 0]
    gt = synthetic_root / "IDRiD" / "B. Disease Grading" / "2. Groundtruths"
    head = (gt / "a. IDRiD_Disease Grading_Training Labels.csv").read_text().splitlines()[0]
    assert head == "Image name,Retinopathy grade,Risk of macular edema"
    k = synthetic_root / "kaggle-eyepacs-subset"
    assert (k / "trainLabels.csv").read_text().startswith("image,level\n")
    assert any(p.name.endswith("_left.jpeg") for p in (k / "train").iterdir())


def test_grade_lesion_coupling():
    def lesion_pixels(grade, i):
        _, masks, counts = synth_fundus(np.random.default_rng([9, grade, i]), grade, 128)
        return masks, counts
    for i in range(5):
        masks, _ = lesion_pixels(0, i)
        assert not any(masks[c].any() for c in ("MA", "HE", "EX", "SE")) and masks["OD"].any()
        masks, _ = lesion_pixels(1, i)
        assert masks["MA"].any() and not any(masks[c].any() for c in ("HE", "EX", "SE"))
    mean = {g: np.mean([sum(lesion_pixels(g, i)[0][c].sum() for c in ("MA", "HE", "EX", "SE"))
                        for i in range(6)]) for g in (2, 3, 4)}
    assert mean[2] < mean[3] < mean[4]


def test_seeded_and_any_size(tmp_path):
    a = write_synthetic(tmp_path / "a", n_seg=2, n_grading=2, n_kaggle=2, size=64, seed=3)
    b = write_synthetic(tmp_path / "b", n_seg=2, n_grading=2, n_kaggle=2, size=64, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "SYNTHETIC.md")
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "SYNTHETIC.md")
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    img, masks, _ = synth_fundus(np.random.default_rng(0), 3, width=300)
    assert img.shape == (199, 300, 3) and masks["HE"].shape == (199, 300)


def test_fast(tmp_path):
    t = time.perf_counter()
    write_synthetic(tmp_path, n_seg=20, n_grading=20, n_kaggle=20, size=256)
    assert time.perf_counter() - t < 15


def test_cli_synth_output_passes_check(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--n-seg", "6", "--n-grading", "6", "--n-kaggle", "6",
                 "--size", "64", "--seed", "2"]) == 0
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "IDRiD segmentation: 6 images (4 train/2 test)" in text
    assert "Kaggle/EyePACS: 6 of 8 label rows have an image" in text
    # refuses to overwrite
    assert main(["data", "synth", "--out", str(out)]) == 2
    assert "already holds" in capsys.readouterr().err
