"""Sphinx additions of the neurodiff book (loaded by ``_config.yml``: ``sphinx.local_extensions``).

- **Maths offline**: MathJax 3 is served from the book itself (the copy that the
  ``sphinx-mathjax-offline`` package ships; its TeX-to-SVG component), not from a CDN, so
  formulas render without internet.
- **Launch buttons open the tracked notebooks**: the chapters are the executed copies in
  ``book/executed/`` (not in the repository); Binder, Colab and JupyterHub get the notebook of
  the same name in ``notebooks/`` instead.
- **One copy of each script, no Thebe**: no console error on any page; one search bar; an icon.
- **Reference labels in author-year style**, like the citations in the text ("Ho et al., 2020"),
  instead of pybtex's alphanumeric labels ("[HJA20]").
- **The version in every page's footer**: neurodiff's version (``neurodiff.__version__``, the
  version of ``pyproject.toml``; ``tests/test_release.py`` keeps them equal) and how to cite it.

Each is written by hand because neither Jupyter Book 1 nor its theme has a setting for it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

#: Parts of MathJax 3 the book needs: the TeX-to-SVG component, whose glyphs are drawn from
#: JavaScript data (no web fonts to fetch), and the TeX extensions it loads on demand.
_MATHJAX_PARTS = ("tex-svg.js", "input/tex/extensions")
_EXECUTED = re.compile(r"(?:\./)?book/executed/(\d\d_[A-Za-z0-9_]+\.ipynb)")


def _mathjax_source() -> Path:
    """MathJax 3 as the ``sphinx-mathjax-offline`` distribution ships it (its folder name is not
    importable, so it is found through the distribution's metadata)."""
    from importlib import metadata

    dist = metadata.distribution("sphinx-mathjax-offline")
    return Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))


def _local_mathjax(app, config) -> None:
    """Copy MathJax into a static folder of the build and point Sphinx at it."""
    src = _mathjax_source()
    static = Path(app.outdir).parent / "mathjax-static"
    dest = static / "mathjax"
    if not (dest / _MATHJAX_PARTS[0]).is_file():
        tmp = static / ".mathjax.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for part in _MATHJAX_PARTS:
            s, d = src / part, tmp / part
            d.parent.mkdir(parents=True, exist_ok=True)
            if s.is_dir():
                shutil.copytree(s, d)
            else:
                shutil.copy2(s, d)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    config.html_static_path = [*config.html_static_path, str(static)]
    config.mathjax_path = "mathjax/tex-svg.js"


def _launch_tracked_notebooks(app, pagename, templatename, context, doctree) -> None:
    """Point the launch buttons of an executed chapter at its notebook in ``notebooks/``."""

    def fix(button: dict) -> None:
        if "url" in button:
            button["url"] = _EXECUTED.sub(r"notebooks/\1", button["url"])
        icon = button.get("icon", "")
        if icon.startswith("/_static/"):  # the theme's Colab icon: absolute, wrong on a sub-path
            button["icon"] = context["pathto"](icon.lstrip("/"), 1)
        for inner in button.get("buttons", []):
            fix(inner)

    for button in context.get("header_buttons", []):
        if button.get("label") == "launch-buttons":
            fix(button)


def _register_bibliography_style() -> None:
    from pybtex.plugin import register_plugin
    from pybtex.richtext import Text
    from pybtex.style.formatting.unsrt import Style as UnsrtStyle
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        """``Ho et al., 2020``; ``Nichol and Dhariwal, 2021``; ``Author, 2024``."""

        def format_labels(self, sorted_entries):
            for entry in sorted_entries:
                people = entry.persons.get("author") or entry.persons.get("editor") or []
                names = [
                    Text.from_latex(" ".join(p.last_names)).render_as("text") for p in people
                ] or [entry.key]
                if "others" in names[1:]:  # BibTeX's "and others"
                    names = [names[0], "", ""]
                if len(names) == 1:
                    who = names[0]
                elif len(names) == 2:
                    who = f"{names[0]} and {names[1]}"
                else:
                    who = f"{names[0]} et al."
                yield f"{who}, {entry.fields.get('year', 'n.d.')}".replace("{", "").replace("}", "")

    class AuthorYearStyle(UnsrtStyle):
        default_label_style = "neurodiff-author-year"
        default_sorting_style = "author_year_title"

    register_plugin("pybtex.style.labels", "neurodiff-author-year", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "neurodiff-author-year", AuthorYearStyle)


def _one_copy_of_each_script(app, pagename, templatename, context, doctree) -> None:
    """Drop the Thebe scripts (live code is not offered: the launch buttons are) and duplicates.

    sphinx-thebe adds its configuration script again on every read of the sources, so pages of
    a rebuilt book declared ``const THEBE_JS_URL`` twice, a console error on every page.
    """
    seen, kept = set(), []
    for js in context.get("script_files", []):
        body = getattr(js, "attributes", {}).get("body", "") or ""
        name = getattr(js, "filename", None) or str(js)
        if "THEBE_JS_URL" in body or "sphinx-thebe" in name:
            continue
        if (name, body) not in seen:
            seen.add((name, body))
            kept.append(js)
    context["script_files"] = kept


def _book_static(app, config) -> None:
    """The book's own stylesheet and icon (``book/_static``)."""
    static = Path(app.confdir) / "book" / "_static"
    config.html_static_path = [*config.html_static_path, str(static)]
    config.html_favicon = str(static / "favicon.svg")
    # the theme logs a console error on every page when no colour mode is set
    config.html_context = {"default_mode": "auto", **(config.html_context or {})}
    app.add_css_file("neurodiff.css")


def _version_footer(app, config) -> None:
    """Sphinx's ``version``/``release`` and the theme's extra footer: neurodiff's version."""
    from neurodiff import __version__

    config.version = config.release = __version__
    options = dict(config.html_theme_options or {})
    extra = options.get("extra_footer") or ""
    options["extra_footer"] = (
        f'<p class="neurodiff-version">neurodiff {__version__} &middot; cite it with '
        "<code>CITATION.cff</code> in the repository</p>" + extra
    )
    config.html_theme_options = options


def setup(app):
    _register_bibliography_style()
    app.connect("config-inited", _version_footer)
    app.connect("config-inited", _local_mathjax)
    app.connect("config-inited", _book_static)
    app.connect("html-page-context", _launch_tracked_notebooks, priority=600)
    app.connect("html-page-context", _one_copy_of_each_script, priority=600)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
