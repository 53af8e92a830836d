"""`datareduce report` on real detection runs: trainers/yolo_train.py for one epoch on a tiny set of the detection
protocol's builder (real CIFAR-10 objects pasted on real COCO128 photos, 10 classes, YOLO labels), with IDS (a
manifest), with ADONIS (selection counts) and with Ultralytics' own fraction= (the first images of the listing). The report draws each image's boxes and counts each class's kept
boxes; the counts here are recomputed from the label files themselves."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench import detection_data
from bench.detection_data import BuildParams
from datareduce import manifest
from datareduce.report import build
from datareduce.report.boxes import label_file, load_boxes, read_labels
from datareduce.report.canvas import BOX_COLORS
from datareduce.report.grids import draw_boxes

from test_report import NO_BROWSER, Elements, cli_report, rendered

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "trainers"))
import yolo_train  # noqa: E402

SET = BuildParams(train_images=12, val_images=4, canvas=64, min_objects=2, max_objects=3, min_side=16, max_side=28)
TRAIN = ["epochs=1", "imgsz=64", "batch=4", "plots=False", "device=cpu", "workers=0", "seed=0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, cifar10_root, coco128_root) -> Path:
    return detection_data.build(SET, tmp_path_factory.mktemp("detection-set"), cifar10_root, coco128_root)


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """Three real one-epoch runs: IDS α 0.5 (a manifest), ADONIS selecting from the first batch (counts) and
    full training on Ultralytics' fraction=0.5."""
    project = tmp_path_factory.mktemp("detection-runs")
    cache = project / "cache"
    out = {}
    for name, flags in (("ids", ["--ids-alpha", "0.5", "--ids-image-size", "64"]),
                        ("adonis", ["--adonis-theta", "0.05", "--adonis-rho", "4", "--adonis-omega", "-1"]),
                        ("fraction", ["fraction=0.5"])):
        args = yolo_train.parse_args([*TRAIN, f"data={dataset}", f"project={project}", f"name={name}",
                                      "--cache-dir", str(cache), *flags])
        out[name] = yolo_train.train(args).save_dir
    out["cache"] = cache
    return out


def labels_of(dataset: Path, image_key: str) -> list:
    """The classes of the boxes of one training image (``images/train/x.jpg``), read straight from its label file
    (``labels/train/x.txt``)."""
    text = (dataset / "labels" / Path(image_key).relative_to("images").with_suffix(".txt")).read_text()
    return [int(line.split()[0]) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "html"
    return build([runs["ids"], runs["adonis"], runs["fraction"]], out, cache_dir=runs["cache"] / "embeddings",
                 embed_missing=False)


def test_kept_boxes_per_class_are_the_label_files_counted(report, runs, dataset):
    counts = report.box_counts
    assert counts.names == json.loads((dataset / "data.yaml").read_text())["names"]  # the data YAML's classes
    keys = sorted(str(p.relative_to(dataset)) for p in (dataset / "images" / "train").iterdir())
    total = np.zeros(10, dtype=int)
    for key in keys:
        np.add.at(total, labels_of(dataset, key), 1)
    assert counts.total.tolist() == total.tolist() and total.sum() >= 24  # 2-3 boxes an image

    ids_share, adonis_share, fraction_share = counts.shares
    m = manifest.read(runs["ids"] / "manifest.json")
    kept = np.zeros(10, dtype=int)
    for key in m["subsets"][0]["kept"]:
        np.add.at(kept, labels_of(dataset, key), 1)
    assert len(m["subsets"][0]["kept"]) == 6 and ids_share.label == "ids: easy subset"
    assert ids_share.kept.tolist() == kept.tolist()
    assert ids_share.overall == pytest.approx(kept.sum() / total.sum())

    selected = np.load(runs["adonis"] / "selection_counts.npy")
    assert 0 < selected.sum() < len(keys)  # ADONIS dropped images in its one epoch
    trained = np.zeros(10, dtype=int)
    for key, times in zip(keys, selected):
        np.add.at(trained, labels_of(dataset, key), int(times))
    assert adonis_share.label == "adonis: back-propagated, per epoch"
    assert adonis_share.kept.tolist() == trained.tolist()  # one epoch: per epoch = in all
    with np.errstate(invalid="ignore"):
        assert np.allclose(adonis_share.share, np.where(total > 0, trained / np.maximum(total, 1), np.nan),
                           equal_nan=True)

    first = np.zeros(10, dtype=int)  # fraction=0.5: Ultralytics trains the first 6 images of the listing
    for key in keys[:6]:
        np.add.at(first, labels_of(dataset, key), 1)
    assert fraction_share.label == "fraction: fraction= subset (the first 6 images)"
    assert fraction_share.kept.tolist() == first.tolist()


def test_the_page_has_the_grids_with_boxes_and_the_box_table(report, runs, dataset):
    files = {p.name for p in report.files}
    assert {"kept_dropped_ids.png", "kept_dropped_fraction.png", "box_counts.png", "selected_adonis.png",
            "index.html"} <= files
    assert not any("class-" in f for f in files)  # no per-class grid of the one image group "all images"
    for name in ("kept_dropped_ids.png", "kept_dropped_fraction.png", "box_counts.png", "selected_adonis.png"):
        with Image.open(report.out / name) as im:
            arr = np.asarray(im.convert("RGB"))
        assert arr.shape[0] > 200 and len(np.unique(arr.reshape(-1, 3), axis=0)) > 50, name
    page = (report.out / "index.html").read_text(encoding="utf-8")
    table = page[page.index("<h2>Boxes per class"):page.index("<h2>Figures")]
    rows = re.findall(r"<tr><td class=l>([^<]+)</td><td>([\d,]+)</td>", table)
    assert [r[0] for r in rows] == report.box_counts.names
    assert [int(r[1].replace(",", "")) for r in rows] == report.box_counts.total.tolist()
    assert table.count("<b>") >= 3  # each run's most starved class


def test_boxes_are_drawn_where_the_labels_say(dataset):
    image = dataset / "images" / "train" / "000000.jpg"
    boxes = read_labels(label_file(image))
    assert label_file(image) == dataset / "labels" / "train" / "000000.txt" and len(boxes) >= 2
    with Image.open(image) as im:
        plain = im.convert("RGB").resize((128, 128))
    drawn = np.asarray(draw_boxes(plain.copy(), boxes))
    for cls, cx, cy, w, h in boxes:
        color = tuple(int(BOX_COLORS[int(cls)][i:i + 2], 16) for i in (1, 3, 5))
        x0, y0 = int(round((cx - w / 2) * 128)), int(round((cy - h / 2) * 128))
        x1 = int(round((cx + w / 2) * 128)) - 1
        assert tuple(drawn[y0 + 3, x0]) == color and tuple(drawn[y0 + 3, x1]) == color  # left and right edges
    assert (drawn != np.asarray(plain)).any(axis=2).mean() < 0.2  # outlines, not filled boxes


def test_a_label_file_that_is_not_yolo_is_named_and_left_out(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for n, text in enumerate(["0 0.5 0.5 0.2 0.2\n2 0.1 0.1 0.1 0.1\n", "1 0.5 0.5 0.2\n", "x 0.5 0.5 0.2 0.2\n"]):
        (tmp_path / "images" / f"{n}.jpg").write_bytes(b"")
        (tmp_path / "labels" / f"{n}.txt").write_text(text)
    (tmp_path / "images" / "3.jpg").write_bytes(b"")  # no label file: a background image
    boxes = load_boxes(sorted((tmp_path / "images").iterdir()), ["a", "b"])
    assert boxes.names == ["a", "b", "2"] and boxes.per_class().tolist() == [1, 0, 1]
    assert [(Path(p).name, why) for p, why in boxes.unreadable] == [
        ("1.txt", "line 1 is not 'class cx cy w h' (a class id and normalised coordinates): '1 0.5 0.5 0.2'"),
        ("2.txt", "line 1 is not numbers: 'x 0.5 0.5 0.2 0.2'")]


@NO_BROWSER
def test_every_image_of_the_detection_report_loads(runs, tmp_path):
    out = tmp_path / "html"
    code, stdout, stderr = cli_report(runs["ids"], runs["adonis"], "--out", out, "--no-embed")
    assert code == 0, stderr
    source = Elements((out / "index.html").read_text(encoding="utf-8"))
    dom = Elements(rendered(out / "index.html", tmp_path))
    assert dom.body.get("data-measured") == "yes" and dom.imgs
    assert [i["src"] for i in dom.imgs] == [i["src"] for i in source.imgs]
    assert {"kept_dropped_ids.png", "box_counts.png"} <= {i["src"] for i in dom.imgs}
    for img in dom.imgs:
        assert img["data-loaded"] == "yes" and int(img["data-natural-width"]) > 0, img["src"]
    assert len(dom.tables) == len(source.tables) >= 3  # runs, metrics, boxes per class
    assert all(int(t["data-body-rows"]) >= 1 for t in dom.tables)
