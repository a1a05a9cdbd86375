"""Messidor-2 and APTOS 2019 readers: tiny synthetic folders for every error case and the exam
grouping; the real copies (skipped when absent) against their SOURCE.md counts."""
from __future__ import annotations

import collections
import time
import zlib

import pytest
from PIL import Image

from mtunet.cli import main
from mtunet.data import (DataRoot, check_dataset, detect_layout, exam_ids, load_data_root, read_aptos,
                         read_messidor)
from mtunet.data.records import SOURCES
from mtunet.errors import DataError

MESSIDOR_HEADER = "id_code,diagnosis,adjudicated_dme,adjudicated_gradable"
MESSIDOR_ROWS = ["20051020_43808_0100_PP.png,0,0,1", "20051020_43832_0100_PP.png,1,0,1",
                 "IM004606.JPG,2,1,1", "IM004607.JPG,3,1,1"]
APTOS_ROWS = ["000c1434d8d7,2", "001639a390f0,4", "0024cdab0c1e,1", "002c21358ce6,0"]


def _jpeg(path, size=(24, 24)):
    """A small RGB JPEG whose colour depends on the name (distinct files, no accidental duplicates)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = zlib.crc32(path.stem.encode())
    Image.new("RGB", size, (seed % 251, (seed >> 8) % 251, (seed >> 16) % 251)).save(path, quality=90)
    return path


def _messidor(tmp_path, rows=MESSIDOR_ROWS, header=MESSIDOR_HEADER, images=None):
    """A messidor-2/ folder: the CSV and one <stem>.jpg per row (or per name of ``images``)."""
    root = tmp_path / "messidor-2"
    root.mkdir(parents=True)
    (root / "messidor_data.csv").write_text("\n".join([header, *rows]) + "\n")
    stems = images if images is not None else [r.split(",")[0].rsplit(".", 1)[0] for r in rows]
    for stem in stems:
        _jpeg(root / "images" / f"{stem}.jpg")
    return root


def _aptos(tmp_path, rows=APTOS_ROWS, header="id_code,diagnosis", images=None):
    """An aptos2019/ folder: train.csv and one train_images/<id_code>.jpg per row."""
    root = tmp_path / "aptos2019"
    root.mkdir(parents=True)
    (root / "train.csv").write_text("\n".join([header, *rows]) + "\n")
    for stem in images if images is not None else [r.split(",")[0] for r in rows]:
        _jpeg(root / "train_images" / f"{stem}.jpg")
    return root


MAKERS = {"messidor": (_messidor, read_messidor, "messidor_data.csv", MESSIDOR_HEADER, MESSIDOR_ROWS),
          "aptos": (_aptos, read_aptos, "train.csv", "id_code,diagnosis", APTOS_ROWS)}


def _fails(root, capsys, *needles):
    """`data check root` exits non-zero with one line `error: <file>: <problem>` holding ``needles``."""
    rc = main(["data", "check", str(root)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc != 0 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _with_grade(rows, grade):
    first = rows[0].split(",")
    first[1] = grade
    return [",".join(first)] + rows[1:]


# --- readers ------------------------------------------------------------------------------------

def test_sources_registered():
    assert "messidor-2" in SOURCES and "aptos2019" in SOURCES


def test_read_messidor(tmp_path):
    gs = read_messidor(_messidor(tmp_path))
    assert [r.image_id for r in gs.records] == ["20051020_43808_0100_PP", "20051020_43832_0100_PP",
                                                 "IM004606", "IM004607"]
    assert [r.grade for r in gs.records] == [0, 1, 2, 3]
    assert gs.n_labels == 4 and gs.n_missing == 0 and gs.unlabelled == [] and gs.n_excluded == 0
    for r in gs.records:
        assert r.source == "messidor-2" and r.split == "train" and not r.has_masks and r.masks == {}
        assert r.image_path.suffix == ".jpg" and r.image_path.is_file()
    # the two examinations: a _PP pair and an IM pair, each keyed by its first stem
    assert [r.patient_id for r in gs.records] == ["20051020_43808_0100_PP"] * 2 + ["IM004606"] * 2
    assert gs.n_patients == 2


def test_read_aptos(tmp_path):
    gs = read_aptos(_aptos(tmp_path))
    assert [(r.image_id, r.grade) for r in gs.records] == [("000c1434d8d7", 2), ("001639a390f0", 4),
                                                            ("0024cdab0c1e", 1), ("002c21358ce6", 0)]
    assert all(r.patient_id == r.image_id and r.source == "aptos2019" and r.split == "train"
               and not r.has_masks for r in gs.records)
    assert gs.n_labels == 4 and gs.n_missing == 0 and gs.n_patients == 4


def test_messidor_original_extensions_are_matched_by_stem(tmp_path):
    """id_code keeps the original .png/.JPG; an image in any accepted format with that stem matches."""
    root = _messidor(tmp_path, images=["20051020_43808_0100_PP", "20051020_43832_0100_PP", "IM004606"])
    Image.new("RGB", (24, 24)).save(root / "images" / "IM004607.png")
    gs = read_messidor(root)
    assert len(gs.records) == 4 and gs.records[-1].image_path.name == "IM004607.png"


@pytest.mark.parametrize("kind", MAKERS)
def test_missing_label_file(tmp_path, capsys, kind):
    make, read, csv_name, *_ = MAKERS[kind]
    root = make(tmp_path)
    (root / csv_name).unlink()
    with pytest.raises(DataError, match="missing label file") as exc:
        read(root)
    assert exc.value.path == root / csv_name
    _fails(root, capsys, csv_name, "missing label file")


@pytest.mark.parametrize("kind", MAKERS)
def test_csv_without_columns(tmp_path, capsys, kind):
    make, read, csv_name, _, rows = MAKERS[kind]
    root = make(tmp_path, header="image,level" + ",x,y" * (kind == "messidor"))
    _fails(root, capsys, csv_name, "lacks column(s) 'id_code', 'diagnosis'")
    with pytest.raises(DataError, match="expected 'id_code,diagnosis'"):
        read(root)


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("content", [b"", b"id_code,diagnosis\n\xff\xfe\xfa,1\n"], ids=["empty", "not-utf8"])
def test_unreadable_csv(tmp_path, capsys, kind, content):
    make, _, csv_name, *_ = MAKERS[kind]
    root = make(tmp_path)
    (root / csv_name).write_bytes(content)
    _fails(root, capsys, csv_name, "unreadable CSV")


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("bad, problem", [("5", "outside 0-4"), ("-1", "outside 0-4"),
                                          ("two", "not an integer 0-4"), ("2.5", "not an integer 0-4"),
                                          ("", "not an integer 0-4")])
def test_bad_grade(tmp_path, capsys, kind, bad, problem):
    make, _, csv_name, header, rows = MAKERS[kind]
    root = make(tmp_path, rows=_with_grade(rows, bad))
    first_id = rows[0].split(",")[0]
    _fails(root, capsys, csv_name, "line 2", first_id, problem)


@pytest.mark.parametrize("kind", MAKERS)
def test_duplicate_ids(tmp_path, capsys, kind):
    make, _, csv_name, header, rows = MAKERS[kind]
    root = make(tmp_path, rows=rows + [rows[1]])
    _fails(root, capsys, csv_name, f"line {len(rows) + 2}", "duplicate image id", rows[1].split(",")[0])


def test_messidor_duplicate_stems(tmp_path, capsys):
    """a.png and a.JPG are distinct id_codes but would both match images/a.jpg."""
    root = _messidor(tmp_path, rows=MESSIDOR_ROWS + ["IM004606.png,2,1,1"])
    line = _fails(root, capsys, "messidor_data.csv", "line 6", "duplicate image stem 'IM004606'", "line 4")
    assert "IM004606.JPG" in line and "IM004606.png" in line


@pytest.mark.parametrize("kind", MAKERS)
def test_two_image_files_with_one_stem(tmp_path, capsys, kind):
    make, *_ = MAKERS[kind]
    root = make(tmp_path)
    image = sorted(p for p in root.rglob("*.jpg"))[0]
    Image.open(image).save(image.with_suffix(".png"))
    _fails(root, capsys, image.stem, "duplicate image id")


@pytest.mark.parametrize("kind", MAKERS)
def test_image_folder_missing_or_empty(tmp_path, capsys, kind):
    make, *_ = MAKERS[kind]
    root = make(tmp_path, images=[])
    folder = "images" if kind == "messidor" else "train_images"
    (root / folder).mkdir()
    _fails(root, capsys, folder, "empty folder")
    (root / folder).rmdir()
    _fails(root, capsys, folder, "missing folder")


@pytest.mark.parametrize("kind", MAKERS)
def test_label_row_without_image_is_counted(tmp_path, capsys, kind):
    """As for EyePACS: a label row whose image is absent is counted as missing, not an error."""
    make, read, _, header, rows = MAKERS[kind]
    stems = [r.split(",")[0].rsplit(".", 1)[0] for r in rows]
    root = make(tmp_path, images=stems[1:])
    gs = read(root)
    assert gs.n_missing == 1 and gs.missing_examples == [stems[0]] and len(gs.records) == 3
    assert gs.n_labels == 4
    assert main(["data", "check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "3 of 4 label rows have an image (1 missing)" in out and f"missing, first: {stems[0]}" in out


@pytest.mark.parametrize("kind", MAKERS)
def test_image_without_label_row_is_counted(tmp_path, capsys, kind):
    make, read, *_ = MAKERS[kind]
    root = make(tmp_path)
    folder = "images" if kind == "messidor" else "train_images"
    extra = _jpeg(root / folder / "IM999999.jpg")
    assert read(root).unlabelled == [extra]
    assert main(["data", "check", str(root)]) == 0
    assert "images without a label row: 1 (first: IM999999.jpg)" in capsys.readouterr().out


def test_messidor_ungradable_rows_are_left_out(tmp_path, capsys):
    """Krause et al. give ungradable images no grade: such rows are counted, not parsed."""
    root = _messidor(tmp_path, rows=MESSIDOR_ROWS + ["IM004608.JPG,,,0"])
    gs = read_messidor(root)
    assert len(gs.records) == 4 and gs.n_excluded == 1 and gs.unlabelled == [] and gs.n_missing == 0
    assert main(["data", "check", str(root)]) == 0
    assert "ungradable rows left out: 1" in capsys.readouterr().out


@pytest.mark.parametrize("kind", MAKERS)
@pytest.mark.parametrize("damage, problem", [(lambda b: b[:200], "truncated"),
                                             (lambda b: b"garbage", "unreadable image")])
def test_broken_image(tmp_path, capsys, kind, damage, problem):
    make, *_ = MAKERS[kind]
    root = make(tmp_path)
    victim = sorted(root.rglob("*.jpg"))[1]
    victim.write_bytes(damage(victim.read_bytes()))
    _fails(root, capsys, victim.name, problem)


def test_identical_files_are_reported(tmp_path, capsys):
    root = _aptos(tmp_path)
    images = root / "train_images"
    (images / "001639a390f0.jpg").write_bytes((images / "000c1434d8d7.jpg").read_bytes())
    assert main(["data", "check", str(root)]) == 0
    assert ("identical files under different ids: 1 groups (1 with different grades; "
            "first: 000c1434d8d7.jpg = 001639a390f0.jpg)") in capsys.readouterr().out


# --- examination guess ----------------------------------------------------------------------------

def _groups(stems):
    by_exam = collections.defaultdict(list)
    for stem, exam in exam_ids(stems).items():
        by_exam[exam].append(stem)
    return sorted(sorted(g) for g in by_exam.values())


def test_exam_ids_pairs_neighbours_in_time():
    pp = [f"20051020_{t}_0100_PP" for t in (43808, 43832, 43882, 43906, 45000)]
    assert _groups(pp) == [pp[:2], pp[2:4], [pp[4]]]
    assert exam_ids(pp)[pp[1]] == pp[0]  # an examination is named by its first image


def test_exam_ids_one_lost_image_does_not_shift_later_pairs():
    # IM000010 lost its fellow eye: pairing by position (1-2, 10-17, 18) would be wrong
    ims = ["IM000001", "IM000002", "IM000010", "IM000017", "IM000018"]
    assert _groups(ims) == [["IM000001", "IM000002"], ["IM000010"], ["IM000017", "IM000018"]]


def test_exam_ids_never_pairs_far_apart_or_across_series():
    far = ["20051020_40000_0100_PP", "20051020_40601_0100_PP"]  # 601 s apart
    days = ["20051020_40000_0100_PP", "20051021_40010_0100_PP"]
    depts = ["20051020_40000_0100_PP", "20051020_40010_0200_PP"]
    kinds = ["IM000001", "20051020_1_0100_PP"]
    for stems in (far, days, depts, kinds, ["IM000001", "IM000011"]):
        assert _groups(stems) == [[s] for s in sorted(stems)]
    assert _groups(["20051020_40000_0100_PP", "20051020_40600_0100_PP"]) == [
        ["20051020_40000_0100_PP", "20051020_40600_0100_PP"]]


def test_exam_ids_unknown_names_are_their_own_exam():
    assert exam_ids(["foo", "bar_left", "IM000001"]) == {"foo": "foo", "bar_left": "bar_left",
                                                          "IM000001": "IM000001"}


# --- layouts -------------------------------------------------------------------------------------

def test_detect_layout(tmp_path):
    messidor, aptos = _messidor(tmp_path), _aptos(tmp_path)
    assert detect_layout(messidor) == "messidor" and detect_layout(aptos) == "aptos"
    assert detect_layout(tmp_path) == "data-root"
    # a copy that lost its CSV is still recognised by its folder name, so the error names the CSV
    (messidor / "messidor_data.csv").unlink()
    assert detect_layout(messidor) == "messidor"


def test_data_root_with_graded_sets(tmp_path, capsys):
    _messidor(tmp_path)
    _aptos(tmp_path)
    root = load_data_root(tmp_path)
    assert isinstance(root, DataRoot) and len(root.messidor.records) == 4 and len(root.aptos.records) == 4
    assert main(["data", "check", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Messidor-2: 4 of 4 label rows have an image (0 missing)" in out
    assert "examinations (guessed from file names): 2 (2 pairs, 0 single images)" in out
    assert "APTOS 2019: 4 of 4 label rows have an image (0 missing)" in out
    assert "grades of present images: 0: 1, 1: 1, 2: 1, 3: 0, 4: 1" in out
    assert "image sizes: 24x24: 4" in out
    assert "note: no IDRiD/ folder" in out


def test_data_root_without_graded_sets(synthetic_root):
    root = load_data_root(synthetic_root)
    assert root.messidor is None and root.aptos is None
    text = check_dataset(synthetic_root).format()
    assert "Messidor" not in text and "APTOS" not in text and "note:" not in text


# --- the real sets (counts from their SOURCE.md) --------------------------------------------------

@pytest.mark.realdata
def test_real_messidor(real_messidor_dir):
    gs = read_messidor(real_messidor_dir)
    assert collections.Counter(r.grade for r in gs.records) == {0: 1017, 1: 270, 2: 347, 3: 75, 4: 35}
    assert gs.n_labels == 1744 and gs.n_missing == 0 and gs.unlabelled == [] and gs.n_excluded == 0
    sizes = collections.Counter(collections.Counter(r.patient_id for r in gs.records).values())
    assert sizes == {2: 861, 1: 22}  # 883 guessed examinations; 874 in the paper (see exam_ids)


@pytest.mark.realdata
def test_real_aptos(real_aptos_dir):
    gs = read_aptos(real_aptos_dir)
    assert collections.Counter(r.grade for r in gs.records) == {0: 1805, 1: 370, 2: 999, 3: 193, 4: 295}
    assert gs.n_labels == 3662 and gs.n_missing == 0 and gs.unlabelled == [] and gs.n_patients == 3662


@pytest.mark.realdata
@pytest.mark.parametrize("fixture, counts", [
    ("real_messidor_dir", "1,744 of 1,744 label rows have an image (0 missing)\n"
                          "  grades of present images: 0: 1017, 1: 270, 2: 347, 3: 75, 4: 35"),
    ("real_aptos_dir", "3,662 of 3,662 label rows have an image (0 missing)\n"
                       "  grades of present images: 0: 1805, 1: 370, 2: 999, 3: 193, 4: 295")])
def test_real_check_cli(request, capsys, fixture, counts):
    """Decodes every image (a few seconds per set on 2 cores)."""
    path = request.getfixturevalue(fixture)
    start = time.perf_counter()
    assert main(["data", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert counts in out
    assert time.perf_counter() - start < 120
