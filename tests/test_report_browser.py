"""The `datareduce report` page as a real browser renders it (headless Chromium): every image it references is a
file of the report folder that the browser decoded, and every table has rows of data, not just a header.

The page is rendered through a copy that only adds a ``<base>`` (the report folder, so every relative link
resolves as it does for index.html itself) and a script that writes what the browser measured into data
attributes; Chromium's ``--dump-dom`` returns the DOM after it ran. Skipped when no Chromium binary is found."""
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from test_report import embed_cache, runs, written  # noqa: F401  (the same tiny real runs and report)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER = next((path for path in map(shutil.which, BROWSERS) if path), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason=f"no Chromium binary on PATH (looked for "
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


def test_every_image_loads_and_every_table_has_rows(written, tmp_path):  # noqa: F811
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
