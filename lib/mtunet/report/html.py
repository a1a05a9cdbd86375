"""A profile's executed notebooks as one static page: results/<profile>/report.html.

    python -m mtunet.report.html --profile smoke     # rebuild results/smoke/report.html by hand

run_all.sh writes it after every batch that ran a notebook. Each notebook is rendered by
nbconvert's HTMLExporter with its JupyterLab template (styles inlined; figures are the notebooks'
own PNG outputs, already data URIs; images a Markdown cell links to are embedded too; a progress
bar redrawn with carriage returns shows its last state, as on a terminal), without
input or output prompts and without the scripts that template loads from CDNs (require.js,
MathJax, Mermaid, widgets: the notebooks need none of them), so the page renders offline and
alone, e.g. as a CI artefact. A table of contents links to each notebook and its headings; the
heading anchors of each notebook are prefixed with its number so that equal headings in two
notebooks do not collide. Stream outputs lose the known TensorFlow start-up lines
(mtunet.kernel_output.KERNEL_NOISE) that notebooks executed before the runner dropped
them still hold; nothing else of a notebook is changed.
"""
from __future__ import annotations

import argparse
import html
import re
import sys
import time
from pathlib import Path

from mtunet.config import project_root
from mtunet.errors import UserError
from mtunet.files import write_text

NOTEBOOK_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")

# The JupyterLab template without what it fetches from the network. Page: the <head> (inlined CSS),
# then the body assembled here (resources.report_body). Fragment: one notebook's cells only.
_TEMPLATES = {
    "mtunet_report_page.html.j2": """\
{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_css -%}
<style type="text/css">
{{ resources.report_css }}
</style>
{%- endblock html_head_css -%}
{%- block body_header -%}
<body class="jp-Notebook mtunet-report" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
{%- endblock body_header -%}
{%- block body_loop -%}
{{ resources.report_body }}
{%- endblock body_loop -%}
{%- block body_footer -%}
</body>
{%- endblock body_footer -%}
""",
    "mtunet_report_fragment.html.j2": """\
{%- extends 'lab/index.html.j2' -%}
{%- block header -%}{%- endblock header -%}
{%- block body_header -%}{%- endblock body_header -%}
{%- block body_footer -%}{%- endblock body_footer -%}
{%- block footer -%}{%- endblock footer -%}
""",
}

REPORT_CSS = """
body.mtunet-report { margin: 0; padding: 0; }
.mtunet-layout { display: flex; align-items: flex-start; }
.mtunet-toc {
  position: sticky; top: 0; flex: 0 0 17rem; max-height: 100vh; overflow-y: auto;
  box-sizing: border-box; padding: 1rem 0.8rem; border-right: 1px solid #ddd;
  background: #fafafa; font-family: var(--jp-ui-font-family); font-size: 13px; line-height: 1.35;
}
.mtunet-toc h2 { font-size: 14px; margin: 0 0 0.6rem 0; }
.mtunet-toc ol { list-style: none; padding-left: 0; margin: 0; }
.mtunet-toc ol ol { padding-left: 0.9rem; margin: 0.15rem 0 0.5rem 0; }
.mtunet-toc li { margin: 0.15rem 0; }
.mtunet-toc a { color: #1a5fb4; text-decoration: none; }
.mtunet-toc a:hover { text-decoration: underline; }
.mtunet-toc > ol > li > a { font-weight: 600; }
.mtunet-main { flex: 1 1 auto; min-width: 0; padding: 0 1.5rem 4rem 1.5rem; }
.mtunet-header { padding: 1.2rem 0 0.6rem 0; border-bottom: 1px solid #ddd; margin-bottom: 0.5rem;
  font-family: var(--jp-ui-font-family); }
.mtunet-header h1 { margin: 0 0 0.3rem 0; font-size: 1.6rem; }
.mtunet-header p { margin: 0; color: #555; font-size: 13px; }
.mtunet-notebook { border-bottom: 3px solid #e0e0e0; padding-bottom: 1.5rem; margin-bottom: 1rem; }
.mtunet-source { font-family: var(--jp-ui-font-family); font-size: 12px; color: #777;
  margin: 1rem 0 0 0; }
.mtunet-report .jp-RenderedImage img { max-width: 100%; height: auto; }
@media print { .mtunet-toc { display: none; } }
"""

_HEADING = re.compile(r'<h([1-6])([^>]*?)\sid="([^"]+)"([^>]*)>(.*?)</h\1>', re.S)
_TAG = re.compile(r"<[^>]+>")


def executed_notebooks(folder: Path) -> list[Path]:
    """The executed notebooks of a profile (NN_name.ipynb; not the .running/.failed copies)."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))


def _exporter(template_file: str):
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter
    from traitlets.config import Config

    # consecutive stream outputs merged and carriage returns applied: a tqdm bar shows its last
    # state, as on a terminal, not one line per redraw
    config = Config({"CoalesceStreamsPreprocessor": {"enabled": True}})
    return HTMLExporter(config=config, template_name="lab", template_file=template_file,
                        extra_loaders=[DictLoader(_TEMPLATES)], exclude_input_prompt=True,
                        exclude_output_prompt=True, embed_images=True)


def _clean(nb) -> None:
    """Drop the known TensorFlow start-up lines from stream outputs (and outputs left empty)."""
    from mtunet.kernel_output import drop_kernel_noise

    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                text = "".join(text) if isinstance(text, list) else text
                output["text"] = drop_kernel_noise(text)
                if not output["text"]:
                    continue
            kept.append(output)
        cell["outputs"] = kept


def _text(fragment: str) -> str:
    return " ".join(html.unescape(_TAG.sub("", fragment)).replace("¶", "").split())


def _namespace_headings(body: str, prefix: str) -> tuple[str, list[tuple[int, str, str]]]:
    """Heading ids prefixed (and the links to them), and the headings as (level, id, text)."""
    headings: list[tuple[int, str, str]] = []
    renamed: dict[str, str] = {}

    def heading(match: re.Match) -> str:
        level, before, old, after, inner = match.groups()
        new = f"{prefix}-{old}"
        renamed[old] = new
        headings.append((int(level), new, _text(inner)))
        return f'<h{level}{before} id="{new}"{after}>{inner}</h{level}>'

    body = _HEADING.sub(heading, body)
    body = re.sub(r'href="#([^"]+)"',
                  lambda m: f'href="#{renamed[m.group(1)]}"' if m.group(1) in renamed else m.group(0),
                  body)
    return body, headings


def render_report(paths: list[Path], title: str, source_dir: Path | None = None) -> str:
    """One HTML page of the given executed notebooks, in order."""
    import nbformat

    if not paths:
        raise UserError("no executed notebooks to put in a report")
    fragment = _exporter("mtunet_report_fragment.html.j2")
    toc: list[str] = []
    sections: list[str] = []
    first = None
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        first = first or nb
        _clean(nb)
        number = path.name[:2]
        # images a Markdown cell links to are relative to the notebook's source folder
        resources = {"metadata": {"name": path.stem, "path": str(source_dir or path.parent)}}
        body, _ = fragment.from_notebook_node(nb, resources=resources)
        anchor = f"nb{number}"
        body, headings = _namespace_headings(body, anchor)
        tops = [h for h in headings if h[0] == 1]
        name = tops[0][2] if tops else path.stem
        entries = "".join(f'<li><a href="#{hid}">{html.escape(text)}</a></li>'
                          for level, hid, text in headings if level in (2, 3) and text)
        toc.append(f'<li><a href="#{anchor}">{html.escape(name)}</a>'
                   + (f"<ol>{entries}</ol>" if entries else "") + "</li>")
        sections.append(f'<section class="mtunet-notebook" id="{anchor}">\n'
                        f'<p class="mtunet-source">{html.escape(path.name)}</p>\n{body}\n</section>')
    stamp = time.strftime("%Y-%m-%d %H:%M")
    report_body = (
        '<div class="mtunet-layout">\n'
        f'<nav class="mtunet-toc" aria-label="Contents"><h2>Contents</h2><ol>{"".join(toc)}</ol></nav>\n'
        '<main class="mtunet-main">\n'
        f'<header class="mtunet-header"><h1>{html.escape(title)}</h1>'
        f"<p>{len(paths)} executed notebook(s), rendered {stamp}. The notebooks themselves: "
        f"{html.escape(str(paths[0].parent.name))}/*.ipynb beside this page.</p></header>\n"
        + "\n".join(sections) + "\n</main>\n</div>")
    page = _exporter("mtunet_report_page.html.j2")
    shell = nbformat.v4.new_notebook(metadata={**first.metadata, "title": title})
    output, _ = page.from_notebook_node(shell, resources={"metadata": {"name": title},
                                                          "report_body": report_body,
                                                          "report_css": REPORT_CSS})
    return output


def write_report(executed_dir: Path, target: Path, title: str | None = None,
                 source_dir: Path | None = None) -> int:
    """Write `target` (atomically) from the executed notebooks in `executed_dir`; returns how
    many went in (0: none there, nothing written)."""
    paths = executed_notebooks(executed_dir)
    if not paths:
        return 0
    if source_dir is None:
        source_dir = project_root() / "notebooks"
    page = render_report(paths, title or "MTUnet reproduction", source_dir=source_dir)
    write_text(target, page)
    return len(paths)


RESOURCE_REFERENCE = re.compile(
    r"""(?:\bsrc\s*=\s*["']?|<link\b[^>]*\bhref\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)"""
    r"""((?:https?:)?//[^"')\s>]+)""", re.I)


def external_resources(page: str) -> list[str]:
    """The network addresses a page would fetch to render (scripts, styles, images, fonts)."""
    return RESOURCE_REFERENCE.findall(page)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtunet.report.html",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="smoke", help="results/<profile>/executed (default smoke)")
    parser.add_argument("--output", help="where to write (default results/<profile>/report.html)")
    args = parser.parse_args(argv)
    root = project_root()
    results = root / "results" / args.profile
    executed = results / "executed"
    target = Path(args.output) if args.output else results / "report.html"
    try:
        if not executed_notebooks(executed):
            raise UserError(f"{executed}: no executed notebooks (run ./run_all.sh --profile "
                            f"{args.profile} first)")
        count = write_report(executed, target, title=f"MTUnet reproduction: {args.profile} profile")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{target}: {count} notebook(s), {target.stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
