"""The internal link check of the built book: every local link resolves, every anchor exists.

``neurodiff check-links [_build/html]`` reads every HTML page of the built book (not the themes'
template files in ``_static/``) with :mod:`html.parser` and checks each ``href``/``src`` that
stays inside the book: the file it names exists (a folder means its ``index.html``), and its
``#anchor``, when it has one and names an HTML page (or the page itself), is the ``id`` (or
``<a name>``) of an element of that page.

Written by hand because Sphinx's ``linkcheck`` builder checks the external links of the sources,
not the internal links and anchors of the built HTML (theme navigation, launch buttons, the
``{download}`` files, the anchors of the executed notebooks' headings); the nightly workflow runs
``jupyter-book build --builder linkcheck`` for the external ones where the runner has a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["BrokenLink", "LinkReport", "check_links"]

#: Attributes that hold a link, by tag (``None``: any tag).
_LINK_ATTRS = {"href": None, "src": None, "poster": {"video"}, "data": {"object"}}
#: Schemes (and scheme-relative ``//``) that leave the book: checked by Sphinx's linkcheck.
_EXTERNAL = ("http:", "https:", "mailto:", "tel:", "ftp:", "data:", "javascript:", "//")


@dataclass(frozen=True)
class BrokenLink:
    """A link of ``page`` (relative to the book) to ``link`` that does not resolve: ``why``."""

    page: str
    link: str
    why: str

    def __str__(self) -> str:
        return f"{self.page}: {self.link} ({self.why})"


@dataclass
class LinkReport:
    """What :func:`check_links` found: pages read, local and external links, broken links."""

    root: Path
    pages: int = 0
    local: int = 0
    external: int = 0
    broken: list[BrokenLink] = field(default_factory=list)

    def __str__(self) -> str:
        head = (
            f"{self.pages} pages, {self.local} internal links checked, {self.external} external "
            f"links left to Sphinx's linkcheck: {len(self.broken)} broken"
        )
        return "\n".join([head, *(f"  {b}" for b in self.broken)])


class _Page(HTMLParser):
    """The ids (anchors) and the links of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            tags = _LINK_ATTRS.get(name, ())
            if name in _LINK_ATTRS and (tags is None or tag in tags):
                self.links.append(value.strip())


def _read(path: Path, cache: dict[Path, _Page]) -> _Page:
    if path not in cache:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8", errors="replace"))
        cache[path] = page
    return cache[path]


def _check_one(page: Path, link: str, root: Path, cache: dict[Path, _Page]) -> str | None:
    """Why ``link`` of ``page`` does not resolve, or None."""
    parts = urlsplit(link)
    target = page
    if parts.path:
        base = root if parts.path.startswith("/") else page.parent
        target = (base / unquote(parts.path).lstrip("/")).resolve()
        if not target.is_relative_to(root):
            return "outside the built book"
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return "no such file"
    anchor = unquote(parts.fragment)
    if anchor and target.suffix == ".html" and anchor not in _read(target, cache).ids:
        return f"no anchor #{anchor} in {target.relative_to(root).as_posix()}"
    return None


def check_links(root: str | Path) -> LinkReport:
    """Check every internal link and anchor of the HTML pages under ``root`` (a built book)."""
    root = Path(root).resolve()
    report = LinkReport(root)
    cache: dict[Path, _Page] = {}
    for page in sorted(root.rglob("*.html")):
        if page.relative_to(root).parts[0] == "_static":  # the themes' Jinja macros, no pages
            continue
        report.pages += 1
        for link in _read(page, cache).links:
            if not link or link == "#" or link.lower().startswith(_EXTERNAL):
                report.external += bool(link) and link != "#"
                continue
            report.local += 1
            why = _check_one(page, link, root, cache)
            if why is not None:
                report.broken.append(BrokenLink(page.relative_to(root).as_posix(), link, why))
    return report
