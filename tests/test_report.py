"""`datareduce report` on tiny real runs: a small CNN trained on the 400 real CIFAR-10 images of cifar10_small
(full data, ADONIS through the core's OnlineSelection, and an IDS subset chosen by `datareduce ids`), written in
the run-folder format of trainers/classify.py (log.jsonl, selection_counts.npy, manifest.json)."""
import contextlib
import io
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from datareduce import cli, ids_command, manifest, metrics, records
from datareduce.config import AdonisConfig, IDSConfig, OfflineConfig, ReduceConfig
from datareduce.datasets import IndexedImageFolder
from datareduce.online import OnlineSelection
from datareduce.report import build
from datareduce.report.embeddings import find_cached_embeddings, pca_2d
from datareduce.report.runs import RunDirError, load_run, load_runs
from datareduce.report.selection import backprop_share_per_epoch, kept_mask, most_least
from datareduce.report.table import choose_baseline, metrics_table, timing_ratio

EPOCHS = 3
BATCH = 32


@pytest.fixture(scope="session")
def embed_cache(tmp_path_factory) -> Path:
    """The session's embedding cache (the same folder test_cli.py fills)."""
    return tmp_path_factory.getbasetemp() / "datareduce-embeddings"


def tensors(root: Path, split: str):
    ds = IndexedImageFolder(root / split)
    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255)
                     .permute(2, 0, 1) for p, _ in ds.samples])
    return (x - 0.5) / 0.25, torch.tensor(ds.targets), ds.sample_keys()


def tiny_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 10))


def train_run(out: Path, data_root: Path, data, cfg: ReduceConfig, manifest_path=None):
    """Train the tiny CNN and write a run folder the way trainers/classify.py does."""
    (x, y, keys), (xv, yv, _) = data
    log = records.RunLog(out)
    log.write("run", {"args": {"data_path": str(data_root), "epochs": EPOCHS, "batch_size": BATCH, "model": "tiny"},
                      "reduce": cfg.describe(), "dataset": "imagefolder", "num_train": len(y), "num_classes": 10})
    positions = torch.arange(len(y))
    if manifest_path is not None:
        t0 = time.perf_counter()
        m = manifest.read(manifest_path)
        positions = torch.tensor(manifest.kept_indices(m, keys))
        manifest.write(out / "manifest.json", m)
        log.write("ids", {"method": m["method"], "source": str(manifest_path), "time_s": time.perf_counter() - t0})
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

    def score(batch):
        with torch.no_grad():
            return F.cross_entropy(model(batch[0]), batch[1], reduction="none")

    loop = OnlineSelection(cfg.adonis.selector(), score, rho=BATCH) if cfg.adonis is not None else None
    counts = np.zeros(len(y), dtype=np.int64)
    cumulative = 0.0
    for epoch in range(EPOCHS):
        g = torch.Generator().manual_seed(epoch)
        order = positions[torch.randperm(len(positions), generator=g)]
        loader = [(x[b], y[b], b) for b in order.split(BATCH)]
        start = time.perf_counter()
        batches = loop.epoch(loader, epoch, last=epoch == EPOCHS - 1) if loop else loader
        steps = backprop = 0
        for xb, yb, ib in batches:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
            steps += 1
            backprop += len(yb)
            np.add.at(counts, ib.numpy(), 1)
        seconds = time.perf_counter() - start
        cumulative += seconds
        with torch.no_grad():
            top1 = (model(xv).argmax(1) == yv).float().mean().item() * 100
        rec = {"epoch": epoch, "train_time_s": seconds, "cumulative_train_time_s": cumulative,
               "samples_backprop": backprop, "optimizer_steps": steps, "train_samples": len(positions),
               "forward_samples": len(positions), "samples_scored": 0, "top1": top1}
        if loop:
            rec.update(loop.stats.as_record())
        log.write("epoch", rec)
    log.write("summary", {**records.summarize(log.records("epoch")), "method": "test"})
    np.save(out / "selection_counts.npy", counts.astype(np.uint16))
    return out


@pytest.fixture(scope="module")
def runs(cifar10_small, embed_cache, tmp_path_factory):
    """Three real runs: full, ADONIS, IDS (α 0.5 easy subset from `datareduce ids`)."""
    base = tmp_path_factory.mktemp("runs")
    data = (tensors(cifar10_small, "train"), tensors(cifar10_small, "test"))
    sel = ids_command.run(cifar10_small, out=base / "ids-manifest.json", alpha=0.5, image_size=32,
                          cache_dir=embed_cache)
    assert sel.manifest["subsets"][0]["num_kept"] == 200
    return {
        "full": train_run(base / "full", cifar10_small, data, ReduceConfig()),
        "adonis": train_run(base / "adonis", cifar10_small, data, ReduceConfig(adonis=AdonisConfig(eta=1))),
        "ids": train_run(base / "ids", cifar10_small, data, ReduceConfig(ids=IDSConfig(alpha=0.5)),
                         manifest_path=sel.out),
    }


def cli_report(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["report", *map(str, args)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def written(runs, embed_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "html"
    code, stdout, stderr = cli_report(runs["full"], runs["adonis"], runs["ids"], "--out", out, "--class", "cat",
                                      "--cache-dir", embed_cache, "--no-embed")
    return code, stdout, stderr, out


def test_report_writes_every_figure_and_an_offline_page(written):
    code, stdout, stderr, out = written
    assert code == 0, stderr
    expected = {"index.html", "metric_vs_time.png", "selection_rate.png", "backprop_histogram.png",
                "selected_adonis.png", "selected_adonis_class-cat.png", "selected_ids.png",
                "selected_ids_class-cat.png", "ids_prototypes_ids.png", "ids_pca_ids.png"}
    assert {p.name for p in out.iterdir()} == expected  # no grid for the full run: every count is EPOCHS
    for name in expected - {"index.html"}:
        with Image.open(out / name) as im:
            arr = np.asarray(im.convert("RGB"))
        assert arr.shape[0] > 200 and arr.shape[1] > 400, name
        assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 50, f"{name} looks blank"
    page = (out / "index.html").read_text(encoding="utf-8")
    srcs = re.findall(r"<img src='([^']+)'", page)
    assert sorted(srcs) == sorted(expected - {"index.html"})
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "baseline: full" in stdout and "Wrote 10 files" in stdout
    assert "every sample was back-propagated 3 times" in stdout  # the full run's left-out grids are explained


def test_table_matches_the_metrics_recomputed_from_the_logs(runs, written, embed_cache):
    loaded = load_runs([runs["full"], runs["adonis"], runs["ids"]])
    assert [r.method for r in loaded] == ["full", "adonis", "ids"]
    base = choose_baseline(loaded)
    assert base.name == "full"
    rows = {row["run"]: row for row in metrics_table(loaded, base)}

    def trajectory(run_dir):
        eps = [r for r in records.read(run_dir / "log.jsonl") if r["type"] == "epoch"]
        return [(e["cumulative_train_time_s"], e["top1"]) for e in eps], eps

    b, _ = trajectory(runs["full"])
    for name in ("adonis", "ids"):
        m, eps = trajectory(runs[name])
        assert rows[name]["acc_drop"] == pytest.approx(metrics.accuracy_drop(b, m))
        assert rows[name]["train_boost"] == pytest.approx(metrics.train_boost(b, m))
        assert rows[name]["samples_backprop"] == sum(e["samples_backprop"] for e in eps)
    assert rows["full"]["acc_drop"] == 0 and rows["full"]["train_boost"] == 1 and rows["full"]["boost_to_drop"] is None
    assert rows["ids"]["samples_backprop"] == EPOCHS * 200
    assert rows["ids"]["preprocessing_s"] is not None
    page = (written[3] / "index.html").read_text(encoding="utf-8")
    assert f"<td>{rows['adonis']['acc_drop']:,.2f}</td>" in page


def test_counts_and_selection_rates(runs):
    adonis = load_run(runs["adonis"])
    ids_run = load_run(runs["ids"])
    assert adonis.counts.sum() == adonis.total("samples_backprop")
    kept = kept_mask(ids_run.manifest, ids_run.images.keys)
    assert kept.sum() == 200 and set(ids_run.counts[kept]) == {EPOCHS} and set(ids_run.counts[~kept]) == {0}
    assert backprop_share_per_epoch(ids_run) == [0.5] * EPOCHS
    most, least = most_least(adonis.counts, 16)
    assert len(most) == len(least) == 16 and not set(most) & set(least)
    assert adonis.counts[most].min() >= adonis.counts[least].max()
    assert list(adonis.counts[most]) == sorted(adonis.counts[most], reverse=True)


def test_pca_matches_the_leading_singular_vectors(embed_cache, runs):
    ids_run = load_run(runs["ids"])
    emb = find_cached_embeddings(ids_run.manifest, [embed_cache])
    assert emb is not None and emb.shape[0] == 400
    emb = emb[::4]  # 100 × 1280: a reference SVD that stays quick on a busy CPU
    xy = pca_2d(emb)
    centred = emb.astype(np.float64) - emb.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    for k in range(2):
        assert abs(np.dot(xy[:, k], u[:, k] * s[k])) == pytest.approx(s[k] ** 2, rel=1e-6)


# ------------------------------------------------------------------------------------ bad run folders
def copy_run(runs, tmp_path, name="adonis") -> Path:
    return Path(shutil.copytree(runs[name], tmp_path / name))


def test_missing_and_foreign_folders(tmp_path):
    with pytest.raises(RunDirError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RunDirError, match="not a datareduce run folder: it has no log.jsonl"):
        load_run(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"loss": 0.1, "step": 1}\n{"loss": 0.09, "step": 2}\n')
    with pytest.raises(RunDirError, match="line 1 is not a datareduce record"):
        load_run(tmp_path)
    (tmp_path / "log.jsonl").write_text("")
    with pytest.raises(RunDirError, match="is empty"):
        load_run(tmp_path)
    (tmp_path / "log.jsonl").write_text('{"type": "run", "args": {}}\n')
    with pytest.raises(RunDirError, match="no epoch records"):
        load_run(tmp_path)


def test_corrupt_files(runs, tmp_path):
    run = copy_run(runs, tmp_path)
    log = run / "log.jsonl"
    good = log.read_text()
    log.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00garbage")
    with pytest.raises(RunDirError, match="not UTF-8|not valid JSON"):
        load_run(run)
    lines = good.splitlines()
    log.write_text("\n".join(lines[:2] + ["{not json"] + lines[2:]) + "\n")
    with pytest.raises(RunDirError, match="line 3 is not valid JSON"):
        load_run(run)
    log.write_text(good + '{"type": "epoch", "epo')  # a torn last line (crash while writing) is tolerated
    assert len(load_run(run).epochs) == EPOCHS
    log.write_text(good)
    (run / "selection_counts.npy").write_bytes(b"not an array")
    with pytest.raises(RunDirError, match="selection_counts.npy is not a readable .npy array"):
        load_run(run)
    np.save(run / "selection_counts.npy", np.zeros(100, dtype=np.uint16))
    with pytest.raises(RunDirError, match="trained on 100 samples but the dataset at .* has 400"):
        load_run(run)


def test_manifest_of_another_dataset_is_refused(runs, tmp_path):
    run = copy_run(runs, tmp_path, "ids")
    m = manifest.read(run / "manifest.json")
    keys = [f"other/{i:04d}.jpg" for i in range(400)]
    manifest.write(run / "manifest.json", manifest.make(keys, [manifest.subset(range(200), keys)], "ids",
                                                        m["params"], m["extractor"]))
    with pytest.raises(RunDirError, match="manifest was made from another dataset"):
        load_run(run)
    (run / "manifest.json").write_text('{"format": "something else"}')
    with pytest.raises(RunDirError, match="not a datareduce manifest"):
        load_run(run)


def test_cli_errors_are_one_clear_line(runs, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "log.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    code, stdout, stderr = cli_report(runs["full"], bad, "--out", tmp_path / "out")
    assert code == 2 and stderr.startswith("datareduce: error: ") and "not UTF-8" in stderr
    assert not (tmp_path / "out").exists()  # nothing written for a bad input
    code, _, stderr = cli_report(runs["full"], runs["adonis"], "--out", tmp_path / "out", "--class", "dragon")
    assert code == 2 and "--class 'dragon' is not a class" in stderr and "airplane" in stderr
    code, _, stderr = cli_report(runs["full"], runs["full"], "--out", tmp_path / "out")
    assert code == 2 and "given twice" in stderr
    code, _, stderr = cli_report(runs["adonis"], "--out", tmp_path / "out", "--baseline", "nope")
    assert code == 2 and "--baseline 'nope' is none of the runs" in stderr
    code, _, stderr = cli_report(runs["ids"], "--out", tmp_path / "out", "--data-path", tmp_path / "nope")
    assert code == 2 and "does not exist" in stderr


def test_without_a_baseline_the_columns_are_left_out(runs, tmp_path):
    rep = build([runs["adonis"], runs["ids"]], tmp_path / "out", embed_missing=False)
    assert rep.baseline is None and "acc_drop" not in rep.table[0]
    assert any("no full-data run" in n for n in rep.notes)
    assert (tmp_path / "out" / "index.html").is_file()


def test_old_yolo_run_folder_format(coco128_root, tmp_path):
    """A folder of an older YOLO trainer: a `config` record (today `run`), mAP as fractions (None on epochs
    without validation), `ids_manifest.json` (today `manifest.json`) with ids relative to the dataset root, and the
    data YAML named by Ultralytics' args.yaml. The mAP values below are placeholders: this checks the reading, not
    a result. (Today's folders are read from real runs in test_yolo_train.py.)"""
    run = tmp_path / "yolo"
    log = records.RunLog(run)
    log.write("config", {"reduce": ReduceConfig(method="rpd", offline=OfflineConfig(0.5)).describe(), "world_size": 1})
    images = sorted(p for p in (coco128_root / "images" / "train").iterdir() if p.suffix == ".jpg")
    keys = [p.relative_to(coco128_root).as_posix() for p in images]
    kept = np.arange(0, len(keys), 2)
    manifest.write(run / "ids_manifest.json", manifest.make(keys, [manifest.subset(kept, keys)], "rpd",
                                                            {"alpha": 0.5, "seed": 0}))
    log.write("ids", {"manifest": str(run / "ids_manifest.json"), "time_s": 0.01, "num_samples": len(keys)})
    for epoch, m in enumerate([None, 0.0125]):
        log.write("epoch", {"epoch": epoch, "train_time_s": 1.0, "samples_backprop": len(kept),
                            "forward_samples": len(kept), "samples_scored": 0, "map50_95": m, "map50": m})
    (run / "args.yaml").write_text(f"task: detect\ndata: {coco128_root / 'data.yaml'}\nepochs: 2\n")
    r = load_run(run)
    assert r.detection and r.metric == "map50_95" and r.method == "rpd" and r.manifest_file == "ids_manifest.json"
    assert r.trajectory() == [(2.0, 1.25)]  # validated epochs only, in %
    assert r.images is not None and r.images.keys == keys and r.num_samples == 128
    assert kept_mask(r.manifest, r.images.keys).sum() == len(kept)
    rep = build([run], tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"index.html", "metric_vs_time.png",
                                                               "selection_rate.png", "kept_dropped_yolo.png",
                                                               "box_counts.png"}  # boxes from COCO128's labels
    assert len(rep.box_counts.names) == 80 and rep.box_counts.total.sum() == 929  # COCO128's train boxes
    assert any("no selection_counts.npy" in n for n in rep.notes)
    assert any("used no embeddings" in n for n in rep.notes)


# ------------------------------------------------------------------------------- what the table says
def test_selector_overhead_comes_from_the_epoch_records(runs, written):
    loaded = load_runs([runs["full"], runs["adonis"], runs["ids"]])
    rows = {row["run"]: row for row in metrics_table(loaded, loaded[0])}
    eps = [r for r in records.read(runs["adonis"] / "log.jsonl") if r["type"] == "epoch"]
    expected = 100 * sum(e["select_time_s"] for e in eps) / sum(e["train_time_s"] for e in eps)
    assert 0 < rows["adonis"]["selector_overhead_pct"] == pytest.approx(expected)
    assert rows["full"]["selector_overhead_pct"] is None and rows["ids"]["selector_overhead_pct"] is None
    page = (written[3] / "index.html").read_text(encoding="utf-8")
    assert f"<td>{expected:,.1f}</td></tr>" in page  # the table's last column
    assert "select %" in written[1]  # and the console table


def test_the_report_cites_the_paper_not_a_document_users_lack(written, runs, tmp_path):
    code, stdout, _, out = written
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "SPEC" not in page and "SPEC" not in stdout and "Table A1" in page
    rep = build([runs["adonis"], runs["ids"]], tmp_path / "out", embed_missing=False)
    assert not [n for n in rep.notes if "SPEC" in n]


def test_class_grids_name_the_run_the_class_was_picked_from(runs, tmp_path):
    rep = build([runs["adonis"], runs["ids"]], tmp_path / "out", embed_missing=False)
    captions = {f.file: f.caption for f in rep.figures}
    mine = captions[f"selected_adonis_class-{rep.class_name}.png"]
    theirs = captions[f"selected_ids_class-{rep.class_name}.png"]
    assert "the class this adonis run back-propagated least often on average" in mine
    assert "the class the adonis run adonis back-propagated least often on average" in theirs
    assert "not picked from this ids run's counts" in theirs
    assert "the class adonis back-propagated" not in theirs  # read as if the IDS run were ADONIS


def _synthetic_run(folder: Path, cfg: ReduceConfig, times, full_epochs=(0, 1, 2)):
    """A run folder with only a log: epochs of 100 samples in 4 steps, full data in ``full_epochs``."""
    log = records.RunLog(folder)
    log.write("run", {"args": {"epochs": len(times)}, "reduce": cfg.describe(), "num_train": 100})
    for epoch, seconds in enumerate(times):
        full = epoch in full_epochs
        log.write("epoch", {"epoch": epoch, "train_time_s": seconds, "top1": 50.0 + epoch,
                            "samples_backprop": 100 if full else 30, "optimizer_steps": 4 if full else 1,
                            "samples_scored": 0 if full else 100, "forward_samples": 100,
                            "keep_fraction": 1.0 if full else 0.3, "select_time_s": 0.0 if full else 0.01})
    return folder


def test_boosts_of_runs_timed_on_a_busy_machine_are_marked_unreliable(tmp_path):
    """The random-keep control trains epoch 0 on every sample, as the full run does (the same samples in the same
    steps): when that epoch took twice as long, the machine was busy and its boosts are not comparable."""
    full = _synthetic_run(tmp_path / "full", ReduceConfig(), [1.0, 1.0, 1.0])
    busy = _synthetic_run(tmp_path / "busy", ReduceConfig(method="random-keep"), [2.0, 0.4, 0.4], full_epochs=(0,))
    calm = _synthetic_run(tmp_path / "calm", ReduceConfig(method="random-keep"), [1.05, 0.4, 0.4], full_epochs=(0,))
    none = _synthetic_run(tmp_path / "none", ReduceConfig(method="sb"), [0.5, 0.4, 0.4], full_epochs=())
    loaded = load_runs([full, busy, calm, none])
    assert [r.settings for r in loaded] == ["", "keep=0.3", "keep=0.3", "beta=2.0 eta=1 history=1024"]
    assert timing_ratio(loaded[1], loaded[0]) == (2.0, 1)
    rows = {row["run"]: row for row in metrics_table(loaded, loaded[0])}
    assert rows["busy"]["boost_unreliable"] and rows["busy"]["timing_ratio"] == 2.0
    assert not rows["calm"]["boost_unreliable"] and rows["calm"]["timing_ratio"] == pytest.approx(1.05)
    assert not rows["none"]["boost_unreliable"] and rows["none"]["timing_ratio"] is None  # nothing to compare
    assert not rows["full"]["boost_unreliable"]
    code, stdout, stderr = cli_report(full, busy, calm, none, "--out", tmp_path / "out")
    assert code == 0, stderr
    notes = [line for line in stdout.splitlines() if "full-data epochs took" in line]
    assert len(notes) == 1 and notes[0].startswith("note: busy: its full-data epochs took 2.00× as long as the same "
                                                   "epochs of the baseline full") and "unreliable" in notes[0]
    busy_line = next(line for line in stdout.splitlines() if line.startswith("busy "))
    assert busy_line.count("x ⚠") == 2  # train boost and boost to −5 p.p.
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert page.count("⚠</span>") == 2
    page = (tmp_path / "out" / "index.html").read_text()
    assert "⚠ marks a run whose full-data epochs" in page
    quiet = cli_report(full, calm, none, "--out", tmp_path / "quiet")
    assert quiet[0] == 0 and "⚠ marks" not in (tmp_path / "quiet" / "index.html").read_text()  # nothing to point at


# ---------------------------------------------------------------------------------- the page in a real browser
# The `datareduce report` page as a real browser renders it (headless Chromium): every image it references is a
# file of the report folder that the browser decoded, and every table has rows of data, not just a header.
#
# The page is rendered through a copy that only adds a ``<base>`` (the report folder, so every relative link
# resolves as it does for index.html itself) and a script that writes what the browser measured into data
# attributes; Chromium's ``--dump-dom`` returns the DOM after it ran. Skipped when no Chromium binary is found.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
NO_BROWSER = pytest.mark.skipif(BROWSER is None, reason=f"no Chromium binary on PATH (looked for "
                                                        f"{', '.join(BROWSERS)}); Debian: apt-get install chromium")

# Runs once the page and its images have loaded: what the browser made of each <img> and <table>.
MEASURE = """<script>addEventListener("load", () => {
  for (const img of document.images) {
    img.dataset.loaded = img.complete && img.naturalWidth > 0 ? "yes" : "no";
    img.dataset.naturalWidth = img.naturalWidth;
  }
  for (const table of document.querySelectorAll("table")) {
    table.dataset.bodyRows = [...table.tBodies].flatMap(b => [...b.rows]).filter(r => r.querySelector("td")).length;
  }
  document.body.dataset.measured = "yes";
});</script>"""


class Elements(HTMLParser):
    """The attributes of every <img> and <table>, and of <body>, in a page."""

    def __init__(self, text: str):
        super().__init__()
        self.imgs, self.tables, self.body = [], [], {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs))
        elif tag == "table":
            self.tables.append(dict(attrs))
        elif tag == "body":
            self.body = dict(attrs)


def rendered(index: Path, tmp_path: Path) -> str:
    """index.html's DOM after Chromium loaded it with the MEASURE script."""
    page = index.read_text(encoding="utf-8")
    assert page.count("<head>") == 1 and page.count("</body>") == 1
    page = page.replace("<head>", f"<head><base href='{index.parent.as_uri()}/'>").replace("</body>",
                                                                                          MEASURE + "</body>")
    probe = tmp_path / "probe.html"
    probe.write_text(page, encoding="utf-8")
    proc = subprocess.run([BROWSER, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                           "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "<html" in proc.stdout, proc.stderr[-3000:]
    return proc.stdout


@NO_BROWSER
def test_every_image_loads_and_every_table_has_rows(written, tmp_path):
    code, _, stderr, out = written
    assert code == 0, stderr
    source = Elements((out / "index.html").read_text(encoding="utf-8"))
    dom = Elements(rendered(out / "index.html", tmp_path))
    assert dom.body.get("data-measured") == "yes"  # the measuring script ran before the DOM was dumped
    assert [i["src"] for i in dom.imgs] == [i["src"] for i in source.imgs] and dom.imgs  # the report's images, all
    for img in dom.imgs:
        assert (out / img["src"]).is_file(), f"{img['src']} is not in {out}"
        assert img["data-loaded"] == "yes" and int(img["data-natural-width"]) > 0, f"{img['src']} did not load"
    assert len(dom.tables) == len(source.tables) >= 2  # the runs and the metrics table at least
    assert all(int(t["data-body-rows"]) >= 1 for t in dom.tables), [t["data-body-rows"] for t in dom.tables]
