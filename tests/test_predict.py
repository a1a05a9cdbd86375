"""`python -m mtunet predict`: any image size in, mask and overlay at that size out; bad files listed.

One tiny MTUnet (32 x 32, random weights, saved by hand with a run.json, as train.fit would write
it) is shared by the tests of this module.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")

from mtunet.cli import main  # noqa: E402
from mtunet.data.preprocess import restore_label_map as _restore_label_map  # noqa: E402


def _fundus(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A dark frame with a bright off-centre disc (so the fundus crop is a real crop)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx, r = h * 0.5, w * 0.45, min(h, w) * 0.42
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
    img = np.zeros((h, w, 3), np.uint8)
    img[disc] = (180, 90, 40)
    img[disc] = np.clip(img[disc] + rng.integers(-20, 20, (int(disc.sum()), 3)), 0, 255)
    return img


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from mtunet.models.registry import build_model
    from mtunet.train import save_final_weights

    run = tmp_path_factory.mktemp("runs") / "tiny-mtunet"
    run.mkdir()
    keras.utils.set_random_seed(0)
    model = build_model("mtunet", (32, 32, 3), n_seg_classes=5)
    save_final_weights(model, run)
    (run / "run.json").write_text(json.dumps(
        {"model": "mtunet", "input_shape": [32, 32, 3], "n_seg_classes": 5}))
    return run


def test_restore_label_map_inverts_fit_square():
    from mtunet.data.preprocess import fit_square

    h, w = 50, 80
    bbox = (5, 45, 10, 70)                      # 40 x 60 crop -> padded to 60 x 60
    truth = np.zeros((h, w), np.uint8)
    truth[20:30, 30:50] = 3
    small = fit_square(truth[..., None].repeat(3, axis=2), 60, bbox)[..., 0]  # no resampling at 60
    back = _restore_label_map(small, (h, w), bbox)
    assert back.shape == (h, w) and back.dtype == np.uint8
    assert np.array_equal(back, truth)
    # a smaller model frame: the lesion lands where it was, up to the resampling
    small = np.zeros((30, 30), np.uint8)
    small[10:15, 10:20] = 2                     # 2x up-sampling -> rows 20..30 of the 60 square
    back = _restore_label_map(small, (h, w), bbox)
    ys, xs = np.nonzero(back == 2)
    # square rows 20..30 minus the pad (10) plus y0 (5); columns 20..40 plus x0 (10)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (15, 24, 30, 49)


def test_predict_other_size_and_bad_files(run_dir, tmp_path, capsys):
    good = tmp_path / "in" / "eye wide.png"
    good.parent.mkdir()
    Image.fromarray(_fundus(70, 110)).save(good)            # not square, not 32 px
    corrupt = tmp_path / "in" / "broken.jpg"
    buf = tmp_path / "whole.jpg"
    Image.fromarray(_fundus(64, 64)).save(buf, quality=90)
    corrupt.write_bytes(buf.read_bytes()[:200])             # truncated JPEG
    text = tmp_path / "in" / "notes.txt"
    text.write_text("not an image\n")
    missing = tmp_path / "in" / "nowhere.png"
    out = tmp_path / "out"

    code = main(["predict", "--model", str(run_dir), "--out", str(out), "--batch-size", "2",
                 str(good), str(corrupt), str(text), str(missing)])
    captured = capsys.readouterr()
    assert code == 1
    assert "could not read 3 file(s):" in captured.err
    for bad in (corrupt, text, missing):
        assert str(bad) in captured.err
    assert "Traceback" not in captured.err

    mask = np.asarray(Image.open(out / "eye wide_mask.png"))
    over = np.asarray(Image.open(out / "eye wide_overlay.png"))
    assert mask.shape == (70, 110) and mask.dtype == np.uint8
    assert over.shape == (70, 110, 3)
    assert mask.max() <= 4
    # outside the fundus crop the mask is background
    assert mask[:, :3].max() == 0 and mask[:, -3:].max() == 0

    rows = list(csv.reader(open(out / "predictions.csv")))
    assert rows[0] == ["image", "predicted_grade", "p0", "p1", "p2", "p3", "p4"]
    assert len(rows) == 2 and rows[1][0] == str(good)
    probs = np.array(rows[1][2:], float)
    assert abs(probs.sum() - 1) < 1e-4 and int(rows[1][1]) == int(probs.argmax())
    assert "eye wide.png" in captured.out                    # the grade table


def test_folder_input_never_overwrites_an_input(run_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_fundus(40, 48, 1)).save(folder / "a.png")
    Image.fromarray(_fundus(48, 40, 2)).save(folder / "a_mask.png")   # an input, named like an output
    before = (folder / "a_mask.png").read_bytes()
    code = main(["predict", "--model", str(run_dir), "--out", str(folder), str(folder)])
    capsys.readouterr()
    assert code == 0
    assert (folder / "a_mask.png").read_bytes() == before
    assert np.asarray(Image.open(folder / "a-2_mask.png")).shape == (40, 48)
    assert np.asarray(Image.open(folder / "a_mask_mask.png")).shape == (48, 40)


def test_missing_run_or_checkpoint_is_a_user_error(run_dir, tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(_fundus(40, 40)).save(image)
    code = main(["predict", "--model", str(tmp_path / "no-such-run"), str(image)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "no such run folder" in err
    assert len(err.strip().splitlines()) == 1

    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    (empty_run / "run.json").write_text("{}")
    code = main(["predict", "--model", str(empty_run), str(image)])
    err = capsys.readouterr().err
    assert code == 2 and "final.npz" in err and "missing" in err
