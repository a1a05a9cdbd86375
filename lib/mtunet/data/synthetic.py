"""A seeded synthetic fundus generator that writes the real datasets' folder layouts.

``write_synthetic(out)`` writes ``out/IDRiD`` (A. Segmentation with masks, B. Disease Grading with
images and label CSVs) and ``out/kaggle-eyepacs-subset`` (train/*.jpeg + trainLabels.csv) with the
same folder names, file names and file formats as the real sets, so the readers load them through
the same code path. It is the data of the smoke profile and of the tests.

Each image: an orange fundus disc on black with vignetting and texture, a bright optic disc, a
darker macula, vessels growing from the optic disc, and lesions whose amounts follow the grade by an
ICDRS-like rule (:data:`GRADE_RULE`):

* 0 No DR: no lesions.
* 1 Mild: only a few microaneurysms (MA).
* 2 Moderate: more MA, some haemorrhages (HE), maybe hard exudates (EX) and a soft exudate (SE).
* 3 Severe: many haemorrhages, more exudates.
* 4 Proliferative: heavy lesions everywhere plus neovascular-like tortuous vessels at the disc.

Segmentation images (like IDRiD-S) are drawn with a grade 1-4 but carry no grade; a lesion mask file
is omitted when the image has none of that lesion, as in the real set. Masks are 8-bit palette TIFFs
(PIL mode "P", values {0, 1}, palette index 1 = red); the real ones are 1-bit palette TIFFs with
the same palette, which :func:`mtunet.data.preprocess.read_mask` reads identically. The Kaggle label
file also lists a few images that are not written, as the real subset's trainLabels.csv does.
"""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from mtunet.data import idrid

# grade -> lesion code -> (min, max) count of lesion objects (EX: clusters); "neo": neovascular vessels
GRADE_RULE: dict[int, dict[str, tuple[int, int]]] = {
    0: {"MA": (0, 0), "HE": (0, 0), "EX": (0, 0), "SE": (0, 0)},
    1: {"MA": (1, 4), "HE": (0, 0), "EX": (0, 0), "SE": (0, 0)},
    2: {"MA": (3, 10), "HE": (1, 5), "EX": (0, 4), "SE": (0, 1)},
    3: {"MA": (6, 15), "HE": (10, 20), "EX": (2, 8), "SE": (0, 3)},
    4: {"MA": (10, 25), "HE": (15, 30), "EX": (5, 12), "SE": (1, 4)},
}
NEOVASCULAR_GRADE = 4
LESION_COLOURS = {"MA": (115, 18, 12), "HE": (105, 14, 10), "EX": (250, 228, 95), "SE": (236, 214, 172)}
PAINT = ("EX", "SE", "HE", "MA")


def _disc_points(rng, n, cx, cy, radius, h, w, od, od_r, r_max=0.9):
    """n random points inside the fundus disc and the frame, away from the optic disc."""
    out = np.empty((0, 2))
    for _ in range(20):
        if len(out) >= n:
            break
        m = max(4 * n, 16)
        ang = rng.uniform(0, 2 * np.pi, m)
        rad = radius * r_max * np.sqrt(rng.uniform(0, 1, m))
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], axis=1)
        ok = ((pts[:, 0] > 0.03 * w) & (pts[:, 0] < 0.97 * w) & (pts[:, 1] > 0.04 * h) & (pts[:, 1] < 0.96 * h)
              & (np.hypot(pts[:, 0] - od[0], pts[:, 1] - od[1]) > 1.6 * od_r))
        out = np.concatenate([out, pts[ok]])
    return out[:n]


def _vessel(canvas, rng, start, angle, step, n_steps, thickness, wiggle):
    pts = [np.array(start, dtype=np.float64)]
    for _ in range(n_steps):
        angle += rng.normal(0, wiggle)
        pts.append(pts[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
    cv2.polylines(canvas, [np.round(np.array(pts)).astype(np.int32)], False, 255, thickness, cv2.LINE_AA)


def synth_fundus(rng: np.random.Generator, grade: int, width: int = 256, aspect: float = 0.664,
                 radius_frac: float = 0.42) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """One synthetic fundus: (RGB uint8 HxW x3, {code: bool mask} incl. "OD", {code: lesion count})."""
    w = int(width)
    h = max(8, int(round(width * aspect)))
    s = w / 256.0
    cx = w / 2 + rng.normal(0, 0.01 * w)
    cy = h / 2 + rng.normal(0, 0.01 * h)
    radius = radius_frac * w * rng.uniform(0.97, 1.03)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy) / radius
    disc = r < 1.0

    base = np.array([rng.uniform(185, 230), rng.uniform(75, 110), rng.uniform(18, 40)], dtype=np.float32)
    vignette = np.clip(1.0 - 0.55 * r ** 2, 0.0, 1.0)
    texture = cv2.resize(rng.normal(0, 1, (6, 6)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = base[None, None, :] * (vignette * (1.0 + 0.06 * texture))[..., None]

    side = rng.choice([-1.0, 1.0])  # left or right eye: optic disc on one side, macula on the other
    od = (cx + side * 0.34 * radius, cy + rng.normal(0, 0.03 * radius))
    od_r = 0.09 * radius * rng.uniform(0.9, 1.1)
    od_dist = np.hypot(xx - od[0], yy - od[1])
    od_mask = (od_dist < od_r) & disc
    od_soft = np.clip(1.3 - od_dist / od_r, 0, 1)[..., None]
    img = img * (1 - od_soft) + np.array([252, 222, 150], np.float32) * od_soft
    mac = (cx - side * 0.25 * radius, cy)
    img *= (1.0 - 0.3 * np.exp(-((xx - mac[0]) ** 2 + (yy - mac[1]) ** 2) / (2 * (0.08 * radius) ** 2)))[..., None]

    vessels = np.zeros((h, w), np.uint8)
    for k in range(int(rng.integers(6, 10))):
        angle = 2 * np.pi * k / 8 + rng.normal(0, 0.3)
        _vessel(vessels, rng, od, angle, 0.06 * radius, 18, max(1, int(round(s * rng.choice([1, 2, 2, 3])))), 0.18)
    if grade >= NEOVASCULAR_GRADE:
        for _ in range(int(rng.integers(10, 18))):
            start = (od[0] + rng.normal(0, od_r), od[1] + rng.normal(0, od_r))
            _vessel(vessels, rng, start, rng.uniform(0, 2 * np.pi), 0.025 * radius, 10, max(1, int(round(s))), 0.9)
    v = (vessels.astype(np.float32) / 255.0)[..., None]
    img = img * (1 - 0.45 * v) + np.array([120, 25, 15], np.float32) * 0.45 * v

    rule = GRADE_RULE[int(grade)]
    counts = {code: int(rng.integers(lo, hi + 1)) for code, (lo, hi) in rule.items()}
    drawn = {code: np.zeros((h, w), np.uint8) for code in PAINT}
    pts = {code: _disc_points(rng, counts[code], cx, cy, radius, h, w, od, od_r) for code in PAINT}
    for x, y in pts["MA"]:
        cv2.circle(drawn["MA"], (int(round(x)), int(round(y))), max(1, int(round(1.2 * s))), 1, -1)
    for x, y in pts["HE"]:
        axes = (max(2, int(rng.uniform(0.008, 0.028) * w)), max(2, int(rng.uniform(0.008, 0.028) * w)))
        cv2.ellipse(drawn["HE"], (int(round(x)), int(round(y))), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    for x, y in pts["EX"]:
        for _ in range(int(rng.integers(3, 9))):
            dx, dy = rng.normal(0, 0.02 * w, 2)
            cv2.circle(drawn["EX"], (int(round(x + dx)), int(round(y + dy))),
                       max(1, int(round(rng.uniform(0.003, 0.008) * w))), 1, -1)
    for x, y in pts["SE"]:
        axes = (max(2, int(rng.uniform(0.015, 0.035) * w)), max(2, int(rng.uniform(0.012, 0.028) * w)))
        cv2.ellipse(drawn["SE"], (int(round(x)), int(round(y))), axes, rng.uniform(0, 180), 0, 360, 1, -1)

    masks: dict[str, np.ndarray] = {}
    for code in PAINT:
        m = drawn[code].astype(bool) & disc
        masks[code] = m
        if not m.any():
            continue
        alpha = cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0) * (0.65 if code == "SE" else 0.92)
        img = img * (1 - alpha[..., None]) + np.array(LESION_COLOURS[code], np.float32) * alpha[..., None]
    masks["OD"] = od_mask

    edge = np.clip((1.0 - r) * radius / 1.5, 0, 1)  # ~1.5 px soft rim, black outside the disc
    img = img * edge[..., None] + rng.normal(0, 2.0, img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    counts = {code: int(masks[code].any() and counts[code]) for code in PAINT}
    return img, masks, counts


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=92)


def write_palette_mask(path: Path, mask: np.ndarray) -> None:
    """Write a bool mask as a palette TIFF (mode "P", values {0, 1}, index 0 black, index 1 red)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.ascontiguousarray(mask.astype(np.uint8))
    im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    im.putpalette([0, 0, 0, 255, 0, 0])
    im.save(path)


def _split_counts(n: int) -> tuple[int, int]:
    n_train = int(round(2 * n / 3))
    return n_train, n - n_train


def _cycled_grades(rng, n: int, grades=(0, 1, 2, 3, 4)) -> list[int]:
    out = [grades[i % len(grades)] for i in range(n)]
    return [out[i] for i in rng.permutation(n)]


def write_synthetic(out_dir, n_seg: int = 24, n_grading: int = 40, n_kaggle: int = 40, size: int = 256,
                    seed: int = 0) -> Path:
    """Write a synthetic IDRiD + Kaggle data root under ``out_dir`` and return ``out_dir``.

    n_seg segmentation images (2/3 train, 1/3 test, ids IDRiD_01..), n_grading graded IDRiD images
    (2/3 train, 1/3 test, each split numbered from IDRiD_001 as in IDRiD), n_kaggle Kaggle-style
    images (left/right pairs of patients) of width ``size``. Seeded: the same arguments give the same
    files; image i does not depend on how many images are written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "SYNTHETIC.md").write_text(
        f"Synthetic fundus data written by mtunet.data.synthetic.write_synthetic(n_seg={n_seg}, "
        f"n_grading={n_grading}, n_kaggle={n_kaggle}, size={size}, seed={seed}). Not real images.\n")
    _write_idrid_segmentation(out / "IDRiD", n_seg, size, seed)
    _write_idrid_grading(out / "IDRiD", n_grading, size, seed)
    _write_kaggle(out / "kaggle-eyepacs-subset", n_kaggle, size, seed)
    return out


def _write_idrid_segmentation(root: Path, n_seg: int, size: int, seed: int) -> None:
    """IDRiD's A. Segmentation: images and the lesion masks they have (IDRiD omits empty ones)."""
    seg = root / idrid.SEGMENTATION
    n_train, _ = _split_counts(n_seg)
    digits = max(2, len(str(n_seg)))
    grade_rng = np.random.default_rng([seed, 0])
    seg_grades = _cycled_grades(grade_rng, n_seg, grades=(1, 2, 2, 3, 3, 4))
    for i in range(n_seg):
        split = "train" if i < n_train else "test"
        image_id = f"IDRiD_{i + 1:0{digits}d}"
        img, masks, _ = synth_fundus(np.random.default_rng([seed, 1, i]), seg_grades[i], size, 0.664, 0.42)
        _write_jpeg(seg / idrid.IMAGES / idrid.SPLIT_FOLDERS[split] / f"{image_id}.jpg", img)
        for code, folder in idrid.LESION_FOLDERS.items():
            if masks[code].any():
                write_palette_mask(seg / idrid.SEG_GROUNDTRUTHS / idrid.SPLIT_FOLDERS[split] / folder
                                   / f"{image_id}_{code}.tif", masks[code])


def _write_idrid_grading(root: Path, n_grading: int, size: int, seed: int) -> None:
    """IDRiD's B. Disease Grading: images and the two label CSVs (train, test)."""
    grading = root / idrid.GRADING
    n_train, n_test = _split_counts(n_grading)
    grades = _cycled_grades(np.random.default_rng([seed, 2]), n_grading)
    gt = grading / idrid.GRADING_GROUNDTRUTHS
    gt.mkdir(parents=True, exist_ok=True)
    for split, (start, n) in {"train": (0, n_train), "test": (n_train, n_test)}.items():
        rows = []
        for j in range(n):
            i = start + j
            image_id = f"IDRiD_{j + 1:03d}"
            img, _, counts = synth_fundus(np.random.default_rng([seed, 3, i]), grades[i], size, 0.664, 0.42)
            _write_jpeg(grading / idrid.IMAGES / idrid.SPLIT_FOLDERS[split] / f"{image_id}.jpg", img)
            risk = 0 if counts["EX"] == 0 else (1 if counts["EX"] <= 3 else 2)
            rows.append((image_id, grades[i], risk))
        with open(gt / idrid.GRADING_CSVS[split], "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\r\n")
            writer.writerow(idrid.GRADING_COLUMNS)
            writer.writerows(rows)


def _write_kaggle(kaggle: Path, n_kaggle: int, size: int, seed: int) -> None:
    """A Kaggle/EyePACS-style subset: left/right pairs, and labelled patients without images."""
    (kaggle / "train").mkdir(parents=True, exist_ok=True)
    k_rng = np.random.default_rng([seed, 4])
    n_patients = (n_kaggle + 1) // 2
    n_extra = max(1, n_kaggle // 4)  # labelled patients whose images are not written
    pids = np.sort(k_rng.choice(np.arange(10, 10 + 50 * (n_patients + n_extra)), n_patients + n_extra, replace=False))
    order = k_rng.permutation(len(pids))
    written, extra = sorted(pids[order[:n_patients]]), sorted(pids[order[n_patients:]])
    first = _cycled_grades(k_rng, n_patients)
    labels: list[tuple[int, str, int]] = []
    k = 0
    for p, pid in enumerate(written):
        g_left = first[p]
        g_right = int(np.clip(g_left + k_rng.choice([-1, 0, 0, 1]), 0, 4))
        for eye, g in (("left", g_left), ("right", g_right)):
            if k >= n_kaggle:
                break
            img, _, _ = synth_fundus(np.random.default_rng([seed, 5, k]), g, size, 2 / 3, 0.31)
            _write_jpeg(kaggle / "train" / f"{pid}_{eye}.jpeg", img)
            labels.append((int(pid), eye, g))
            k += 1
    for pid in extra:
        for eye in ("left", "right"):
            labels.append((int(pid), eye, int(k_rng.integers(0, 5))))
    labels.sort()
    with open(kaggle / "trainLabels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("image", "level"))
        writer.writerows((f"{pid}_{eye}", g) for pid, eye, g in labels)
