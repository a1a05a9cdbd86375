"""results/<profile>/report.html (mtunet.report.html) and a quiet kernel start.

1. The page builder on two tiny notebooks: a table of contents, figures as data URIs, nothing
   fetched from the network, TensorFlow's start-up lines gone and every other output kept.
2. `browser`: the smoke profile's page in headless Chromium (Debian's /usr/bin/chromium): it
   renders, every image loads, every contents link has its target, nothing is fetched.
3. A notebook run the runner's way (mtunet.commands.run_notebooks.execute_notebook) in a fresh
   process: neither its terminal nor the executed notebook holds the kernel-start noise, while
   a deliberate stderr line (Python's and a C-level write to fd 2) still shows.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mtunet.commands import run_notebooks
from mtunet.config import project_root
from mtunet.report import html as report_html

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
NOISE = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
         "I0000 00:00:1795699813.915292    1023 port.cc:153] oneDNN custom operations are on. You "
         "may see slightly different numerical results due to floating-point round-off errors from "
         "different computation orders. To turn them off, set the environment variable "
         "`TF_ENABLE_ONEDNN_OPTS=0`.\n")
NOISE_MARKERS = ("absl::InitializeLog", "oneDNN custom operations", "only on platforms with AVX-512",
                 "without encryption")


def _png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (12, 8), (200, 30, 30)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _two_notebooks(folder: Path) -> list[Path]:
    v4 = nbformat.v4
    figure = v4.new_code_cell("show()", outputs=[
        v4.new_output("display_data", data={"image/png": _png(), "text/plain": "<Figure>"})])
    setup = v4.new_code_cell("import tensorflow", outputs=[
        v4.new_output("stream", name="stderr", text=NOISE),
        v4.new_output("stream", name="stderr", text="a real warning\n")])
    first = v4.new_notebook(cells=[v4.new_markdown_cell("# 01 · Data\n\nText, [see](#Results)."),
                                   setup, v4.new_markdown_cell("## Results"), figure])
    second = v4.new_notebook(cells=[v4.new_markdown_cell("# 02 · Models"),
                                    v4.new_markdown_cell("## Results\n\nThe same heading again."),
                                    v4.new_code_cell("1 + 1", outputs=[v4.new_output(
                                        "execute_result", data={"text/plain": "2"},
                                        execution_count=1)])])
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "01_data.ipynb", folder / "02_models.ipynb"]
    for nb, path in zip((first, second), paths):
        nbformat.write(nb, path)
    (folder / "02_models.failed.ipynb").write_text(paths[1].read_text())  # not a report notebook
    return paths


def test_page_has_contents_embedded_figures_and_no_network(tmp_path):
    _two_notebooks(tmp_path / "executed")
    target = tmp_path / "report.html"
    assert report_html.write_report(tmp_path / "executed", target, title="Tiny report",
                                     source_dir=tmp_path) == 2
    page = target.read_text()
    nav = page[page.index("<nav"):page.index("</nav>")]
    assert 'href="#nb01"' in nav and 'href="#nb02"' in nav and "01 · Data" in nav
    assert 'href="#nb01-Results"' in nav and 'href="#nb02-Results"' in nav   # no id collision
    assert 'id="nb01-Results"' in page and 'id="nb02-Results"' in page
    assert 'href="#nb01-Results"' in page.split("</nav>", 1)[1]          # in-notebook link follows
    assert re.search(r'<img [^>]*src="data:image/png;base64,', page)    # the figure, inline
    assert report_html.external_resources(page) == []
    assert "<script" not in page
    assert "a real warning" in page
    assert not any(marker in page for marker in NOISE_MARKERS)
    assert "Tiny report" in page and "In&nbsp;[" not in page
    assert not list(tmp_path.glob("*.tmp"))


def test_external_resources_are_found():
    page = ('<script src="https://cdn.example/require.js"></script><img src="//x.org/a.png">'
            '<style>@import "http://fonts/x.css"; .a { background: url(https://x/y.png) }</style>'
            '<link rel="stylesheet" href="https://x/z.css"><a href="https://arxiv.org">paper</a>'
            '<img src="data:image/png;base64,AAAA">')
    assert report_html.external_resources(page) == [
        "https://cdn.example/require.js", "//x.org/a.png", "http://fonts/x.css", "https://x/y.png",
        "https://x/z.css"]


def test_no_notebooks_no_page(tmp_path, capsys, monkeypatch):
    (tmp_path / "executed").mkdir()
    assert report_html.write_report(tmp_path / "executed", tmp_path / "report.html") == 0
    assert not (tmp_path / "report.html").exists()
    monkeypatch.setenv("MTUNET_PROJECT_DIR", str(tmp_path))
    assert report_html.main(["--profile", "nothing"]) == 2
    assert "no executed notebooks" in capsys.readouterr().err


# -- the browser -------------------------------------------------------------------------------

# Appended to a copy of the page (the page itself has no script): after load, the result of the
# checks goes into the DOM, which --dump-dom prints.
CHECK_SCRIPT = """
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var links = Array.prototype.slice.call(document.querySelectorAll("nav.mtunet-toc a"));
  var result = {
    images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.src.slice(0, 40); }),
    links: links.length,
    dangling: links.filter(function (a) {  // as a browser resolves a fragment: as is, then decoded
      var id = a.getAttribute("href").slice(1);
      return !(document.getElementById(id) || document.getElementById(decodeURIComponent(id)));
    }).map(function (a) { return a.getAttribute("href"); }),
    fetched: performance.getEntriesByType("resource").map(function (e) { return e.name; })
                        .filter(function (n) { return n.indexOf("data:") !== 0; }),
    sections: document.querySelectorAll("section.mtunet-notebook").length,
    height: document.documentElement.scrollHeight,
    title: document.title
  };
  var out = document.createElement("pre");
  out.id = "mtunet-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>
"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile_dir = tmp_path / "chromium-profile"
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs Debian's chromium (/usr/bin/chromium): apt-get install chromium")
def test_smoke_report_renders_in_chromium(tmp_path):
    executed = project_root() / "results" / "smoke" / "executed"
    count = len(report_html.executed_notebooks(executed))
    if not count:
        pytest.skip(f"{executed}: no executed notebooks (run ./run_all.sh first)")
    page = tmp_path / "report.html"
    assert report_html.write_report(executed, page, title="MTUnet reproduction: smoke profile") == count
    text = page.read_text()
    assert report_html.external_resources(text) == []
    checked = tmp_path / "checked.html"
    checked.write_text(text.replace("</body>", CHECK_SCRIPT + "</body>"))
    done = _chromium(tmp_path, "--virtual-time-budget=20000", "--dump-dom", checked.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.index('<pre id="mtunet-check">') + len('<pre id="mtunet-check">')
    result = json.loads(html.unescape(done.stdout[start:done.stdout.index("</pre>", start)]))
    assert result["sections"] == count
    assert result["images"] >= count and result["broken"] == []          # every figure decoded
    assert result["links"] > count and result["dangling"] == []
    assert result["fetched"] == []                                        # nothing from anywhere
    assert result["height"] > 5000 and result["title"] == "MTUnet reproduction: smoke profile"
    # and it paints: a screenshot of the page's top is not blank
    from PIL import Image

    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, "--window-size=1400,1000", "--virtual-time-budget=10000",
                     f"--screenshot={shot}", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    colours = Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50


# -- a quiet kernel ----------------------------------------------------------------------------

RUN_ONE = """
import sys
from mtunet.commands.run_notebooks import CellProgress, execute_notebook
progress = CellProgress("[1/1] t", bar=False)
execute_notebook(sys.argv[1], sys.argv[2], {}, cwd=sys.argv[3], progress=progress)
progress.close()
"""


def test_kernel_start_noise_reaches_neither_terminal_nor_notebook(tmp_path):
    pytest.importorskip("tensorflow")
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_markdown_cell("## Import"),
        v4.new_code_cell("import os, sys\nimport tensorflow as tf"),
        v4.new_markdown_cell("## An int32 op oneDNN leaves to Eigen, and real stderr"),
        v4.new_code_cell("tf.transpose(tf.zeros((2, 3, 4, 5), tf.int32), [0, 3, 1, 2])\n"
                         "print('a real warning', file=sys.stderr)\n"
                         "os.write(2, b'a C-level line on fd 2\\n')\n"
                         "import time; time.sleep(0.5)"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source, target = tmp_path / "t.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, source)
    # as run_all.sh would run it: not under pytest (ipykernel does not capture file descriptors
    # when PYTEST_CURRENT_TEST is set), with setup_env.sh's TensorFlow log level
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    done = subprocess.run([sys.executable, "-c", RUN_ONE, str(source), str(target), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    terminal = done.stdout + done.stderr
    assert done.returncode == 0, terminal[-3000:]
    assert not any(marker in terminal for marker in NOISE_MARKERS), terminal[-3000:]
    outputs = [output for cell in nbformat.read(target, as_version=4).cells
               for output in cell.get("outputs", [])]
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert "a real warning" in stderr and "a C-level line on fd 2" in stderr
    assert not any(marker in json.dumps(outputs) for marker in NOISE_MARKERS), stderr
    assert "a C-level line on fd 2" in terminal          # C-level output is still echoed there


def test_kernel_noise_patterns_cover_the_lines_notebooks_held():
    """The executed notebooks of this repository made before the fix: every absl/oneDNN stderr
    line in them is one KERNEL_NOISE knows."""
    seen = 0
    for path in sorted((project_root() / "results").glob("*/executed/*.ipynb")):
        for cell in json.loads(path.read_text()).get("cells", []):
            for output in cell.get("outputs", []):
                text = output.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                for line in text.splitlines():
                    if "absl::" in line or "oneDNN" in line:
                        seen += 1
                        assert run_notebooks.is_kernel_noise(line), (path.name, line)
    if not seen:
        pytest.skip("no executed notebook holds such lines any more")
