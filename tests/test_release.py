"""A study people can cite, download and keep running: the citation files and the version, the
workflows, the internal link check, and on the smoke book: no broken link, the version shown,
the generator and its card in the book's downloads."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

import neurodiff
from neurodiff import cli, config
from neurodiff.links import check_links

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
#: The Citation File Format 1.2.0 schema (citation-file-format.github.io, CC-BY-4.0), as the
#: cffconvert package ships it: cffconvert itself pins jsonschema < 4, which the notebook
#: tools cannot share, so the file is validated with jsonschema here.
CFF_SCHEMA = Path(__file__).parent / "data" / "cff-1.2.0.schema.json"


def _version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


# --------------------------------------------------------------------------------------------
# citation and versions
# --------------------------------------------------------------------------------------------


def _cff_errors(data: dict) -> list[str]:
    import jsonschema

    schema = json.loads(CFF_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]


def test_citation_cff_is_valid_cff_1_2_0():
    data = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert data["cff-version"] == "1.2.0"
    assert _cff_errors(data) == []
    # the check can fail: a file without its message, or a reference without authors
    broken = copy.deepcopy(data)
    del broken["message"]
    broken["references"][0].pop("authors")
    assert len(_cff_errors(broken)) == 2


def test_the_reproduced_paper_is_cited_as_the_bibliography_has_it():
    from pybtex.database import parse_file

    entry = parse_file(str(ROOT / "book" / "references.bib")).entries["basile2024preliminary"]
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    (paper,) = [r for r in cff["references"] if r["title"] == entry.fields["title"]]
    assert paper["year"] == int(entry.fields["year"])
    assert [a["family-names"] for a in paper["authors"]] == [
        " ".join(p.last_names) for p in entry.persons["author"]
    ]
    assert str(paper["volume"]) == entry.fields["volume"]


def test_one_version_everywhere():
    version = _version()
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    assert neurodiff.__version__ == version
    assert str(yaml.safe_load((ROOT / "CITATION.cff").read_text())["version"]) == version
    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    assert zenodo["version"] == version
    changelog = (ROOT / "CHANGELOG.md").read_text()
    sections = re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.M)
    assert sections[:2] == ["Unreleased", version], sections


def test_zenodo_metadata_describes_the_software_and_the_paper():
    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert zenodo["upload_type"] == "software"
    assert zenodo["title"] == cff["title"]
    assert zenodo["license"] == cff["license"] == "MIT"
    assert zenodo["creators"] and all(c["name"] for c in zenodo["creators"])
    handles = {i["value"] for r in cff["references"] for i in r.get("identifiers", [])}
    assert handles & {r["identifier"] for r in zenodo["related_identifiers"]}
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License")


def test_the_reproducibility_appendix_shows_the_version():
    from neurodiff.record import reproducibility_markdown

    record = {
        "finished": "2026-01-01T00:00:00+00:00",
        "git_commit": "abc",
        "neurodiff_version": "9.8.7",
        "profile": "smoke",
        "params_hash": "h",
        "device": "CPU",
        "platform": "linux",
        "notebooks": {},
        "total_seconds": 0.0,
        "versions": {},
        "params": {},
    }
    assert "| neurodiff version | 9.8.7 |" in reproducibility_markdown(record)


# --------------------------------------------------------------------------------------------
# workflows
# --------------------------------------------------------------------------------------------


def _workflow(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _run_scripts(data: dict) -> list[str]:
    return [s["run"] for job in data["jobs"].values() for s in job["steps"] if "run" in s]


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.search(r"^\.PHONY:(.*)$", text, flags=re.M).group(1).split())


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_is_well_formed(path: Path):
    data = _workflow(path)
    assert data["name"] and data["on"] and data["jobs"]
    commands = set(cli.build_parser()._subparsers._group_actions[0].choices)
    for name, job in data["jobs"].items():
        assert job["runs-on"] == "ubuntu-latest", name
        if any("run" in step for step in job["steps"]):  # a job that runs commands ends
            assert isinstance(job.get("timeout-minutes"), int), f"{name}: no timeout"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), step
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]
    for script in _run_scripts(data):
        # GitHub replaces ${{ ... }} before the shell runs: a word stands in for each
        plain = re.sub(r"\$\{\{[^}]*\}\}", "X", script)
        check = subprocess.run(["bash", "-n"], input=plain, text=True, capture_output=True)
        assert check.returncode == 0, f"{path.name}: {check.stderr}\n{script}"
        for sub in re.findall(r"neurodiff (?!book/)([a-z][a-z-]+)", plain):
            assert sub in commands | {"run"}, f"{path.name}: no command `neurodiff {sub}`"
        for target in re.findall(r"\bmake ([a-z][a-z ]*?)(?= [A-Z]|$)", plain, flags=re.M):
            assert set(target.split()) <= _make_targets(), target
        for profile in re.findall(r"(?:--profile|PROFILE=) ?([a-z0-9]+)", plain):
            assert profile in config.available_profiles() or profile == "X", profile


def test_the_nightly_run_executes_smoke_and_demo_and_builds_strictly():
    data = _workflow(ROOT / ".github" / "workflows" / "nightly.yml")
    assert "workflow_dispatch" in data["on"]
    (cron,) = [c["cron"] for c in data["on"]["schedule"]]
    fields = cron.split()
    assert len(fields) == 5 and all(re.fullmatch(r"[\d*/,-]+", f) for f in fields)
    (job,) = data["jobs"].values()
    assert job["strategy"]["matrix"]["profile"] == ["smoke", "demo"]
    scripts = "\n".join(_run_scripts(data))
    assert "neurodiff run --profile ${{ matrix.profile }}" in scripts
    assert "neurodiff book --strict" in scripts
    assert "neurodiff check-links _build/html" in scripts
    assert "--builder linkcheck" in scripts


def test_the_release_builds_the_book_the_wheel_and_publishes_the_generator():
    data = _workflow(ROOT / ".github" / "workflows" / "release.yml")
    assert data["on"]["push"]["tags"] == ["v*"]
    assert data["permissions"]["contents"] == "write"
    scripts = "\n".join(_run_scripts(data))
    for needed in (
        "neurodiff book --strict",
        "neurodiff check-links",
        "python -m build",
        "neurodiff-generator.safetensors",
        "MODEL_CARD.md",
        "gh release create",
        "CHANGELOG.md",
    ):
        assert needed in scripts, needed


def test_the_release_notes_are_the_versions_changelog_section(tmp_path):
    """The release workflow's awk line, run on this CHANGELOG.md."""
    data = _workflow(ROOT / ".github" / "workflows" / "release.yml")
    (line,) = [
        ln.strip() for s in _run_scripts(data) for ln in s.splitlines() if ln.strip()[:3] == "awk"
    ]
    words = shlex.split(line.split(">")[0].replace("$VERSION", _version()))
    notes = subprocess.run(words, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert notes.strip().startswith("The study as a re-runnable book")
    assert "## [" not in notes and "Unreleased" not in notes


# --------------------------------------------------------------------------------------------
# the internal link check
# --------------------------------------------------------------------------------------------


def _page(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<html><body>{body}</body></html>")


def test_the_link_check_finds_missing_files_and_anchors(tmp_path):
    _page(
        tmp_path / "index.html",
        '<h1 id="top">t</h1><a href="#top">ok</a><a href="#gone">no anchor</a>'
        '<a href="book/a.html#sec-1">ok</a><a href="book/a.html#sec-2">no anchor there</a>'
        '<a href="book/missing.html">no file</a><img src="_static/x.png">'
        '<a href="https://example.org/#x">external</a><a href="book/">folder</a>'
        '<link href="_static/style.css?v=1" rel="stylesheet"><a href="../outside.html">out</a>',
    )
    _page(tmp_path / "book" / "a.html", '<section id="sec-1"></section><a name="old"></a>')
    _page(tmp_path / "book" / "index.html", '<a href="a.html#old">ok</a><a href="#">top</a>')
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "style.css").write_text("")
    _page(tmp_path / "_static" / "macros.html", "<a href=\"{{ pathto('x') }}\">a template</a>")
    report = check_links(tmp_path)
    assert sorted((b.page, b.link) for b in report.broken) == [
        ("index.html", "#gone"),
        ("index.html", "../outside.html"),
        ("index.html", "_static/x.png"),
        ("index.html", "book/a.html#sec-2"),
        ("index.html", "book/missing.html"),
    ]
    assert report.pages == 3 and report.external == 1 and report.local == 10
    assert "5 broken" in str(report)


def test_check_links_command_exits_1_on_a_broken_link(tmp_path, capsys):
    _page(tmp_path / "index.html", '<a href="nowhere.html">x</a>')
    assert cli.main(["check-links", str(tmp_path)]) == 1
    assert "nowhere.html (no such file)" in capsys.readouterr().out
    _page(tmp_path / "index.html", '<a href="index.html">x</a>')
    assert cli.main(["check-links", str(tmp_path)]) == 0
    assert cli.main(["check-links", str(tmp_path / "absent")]) == 2


# --------------------------------------------------------------------------------------------
# on the smoke book
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_smoke_book_has_no_broken_internal_link(smoke_book):
    _, _, index = smoke_book
    report = check_links(index.parent)
    assert report.broken == [], str(report)
    assert report.pages >= 10 and report.local >= 500  # the check read the whole book


@pytest.mark.slow
def test_the_built_book_shows_the_version(smoke_book):
    _, _, index = smoke_book
    version = _version()
    html = index.parent
    for page in (html / "book" / "intro.html", html / "book" / "executed" / "03_train.html"):
        assert f"neurodiff {version}" in page.read_text(), page.name
    appendix = (html / "book" / "executed" / "reproducibility.html").read_text()
    text = re.sub(r"<[^>]+>", " ", appendix)
    assert re.search(rf"neurodiff version\s+{re.escape(version)}\s", text)


@pytest.mark.slow
def test_the_run_puts_the_generator_and_its_card_in_the_books_downloads(smoke_book):
    from neurodiff import release
    from neurodiff.weights import read_weights

    project, report, _ = smoke_book
    folder = project / "book" / "executed" / release.DOWNLOADS
    weights = read_weights(folder / release.WEIGHTS_NAME)
    assert weights.source["params_hash"] == report.params.hash()
    card = (folder / release.CARD_NAME).read_text()
    assert "metrics** are inside the real-vs-real range" in card  # chapter 5's verdicts
    assert "Simulated, no patient data" in card
