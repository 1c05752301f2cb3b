"""The HTML report and the JUnit XML (verification/io/html.py, verification/io/junit.py), looked at as a reader
and a CI system would.

One smoke-profile ``iclkd verify --html --junit-xml --json`` run feeds the module (the one that
tests/verification/test_coverage.py traces, made once per pytest run by tests/verification/_smoke_run.py): its page is opened in
real headless Chromium (the Debian package ``chromium``, installed by .ci/run) through the DevTools
protocol, at 1280 px and at phone width: it must render with no console error and no network request,
show every check's card, give every plot a non-zero size, not overflow a phone's width, and its
screenshot must not be blank. The JUnit file must validate against the common JUnit schema, ``junit-10.xsd``
(the Jenkins xUnit plugin's, which pytest's own junitxml tests use), and every status must map to the right
element. The schema is not committed: .ci/run takes it from pytest's source distribution on PyPI and names it
in ``ICLKD_JUNIT_XSD`` (``pip download --no-deps --no-binary :all: pytest``, then
``testing/example_scripts/junit-10.xsd`` from the archive); without it the schema tests skip, with it
required (``ICLKD_REQUIRE_JUNIT_XSD``, set by .ci/run) they fail instead.

``ICLKD_SCREENSHOT=$PWD/docs/img/html-report.png pytest tests/verification/test_reports.py -k browser`` saves
the 1280 px screenshot that the README shows.
"""

from __future__ import annotations

import io
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from _chromium import Chromium, file_url, find_chromium
from _smoke_run import smoke_run

from verification import cli
from verification.io import html, junit

SCHEMA = os.environ.get("ICLKD_JUNIT_XSD", "")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``iclkd verify --profile smoke`` with every report: ``(folder, report dict)`` (the run the coverage test traces,
    tests/verification/_smoke_run.py; the folder also holds a sibling page, ``tightness.html``)."""
    folder, run = smoke_run(tmp_path_factory)
    assert run["status"] == 0
    return folder, json.loads((folder / "r.json").read_text())


def _validate(path: Path) -> None:
    xmlschema = pytest.importorskip("xmlschema", reason="the test extra installs xmlschema")
    if not (SCHEMA and Path(SCHEMA).is_file()):
        if os.environ.get("ICLKD_REQUIRE_JUNIT_XSD"):
            pytest.fail(f"ICLKD_JUNIT_XSD={SCHEMA!r} is not a file, and ICLKD_REQUIRE_JUNIT_XSD is set (.ci/run)")
        pytest.skip("the JUnit schema is not here: set ICLKD_JUNIT_XSD to junit-10.xsd from pytest's sdist (.ci/run)")
    xmlschema.XMLSchema(SCHEMA).validate(str(path))


# ------------------------------------------------------------------------------------------------ browser

PAGE_FACTS = """JSON.stringify({
  cards: [...document.querySelectorAll('article.card')].map(e => e.id),
  plots: [...document.querySelectorAll('figure.plot svg')].map(e => {
    const r = e.getBoundingClientRect(); return {card: e.closest('article').id, width: r.width, height: r.height};
  }),
  widest: Math.max(...[...document.querySelectorAll('article.card')].map(e => e.getBoundingClientRect().right)),
  scrollWidth: document.documentElement.scrollWidth,
  links: [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href')),
  scripts: document.scripts.length,
})"""


def _not_blank(png: bytes) -> None:
    image = pytest.importorskip("PIL.Image", reason="Pillow comes with the plots extra (matplotlib)")
    picture = image.open(io.BytesIO(png)).convert("RGB")
    colours = picture.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "the screenshot has almost no colours: blank?"
    most = max(count for count, _ in colours)
    assert most < 0.9 * picture.width * picture.height, "one colour covers 90 % of the screenshot: blank?"


def test_browser_renders_the_smoke_report(smoke):
    if find_chromium() is None:
        if os.environ.get("ICLKD_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed, and ICLKD_REQUIRE_CHROMIUM is set (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run installs it)")
    pytest.importorskip("matplotlib", reason="the page's plots need the plots extra")
    folder, report = smoke
    page = folder / "r.html"
    with Chromium() as browser:
        tab = browser.open_tab()
        tab.viewport(1280, 800)
        tab.load(file_url(page))
        facts = json.loads(tab.evaluate(PAGE_FACTS))
        shot = tab.screenshot()
        if os.environ.get("ICLKD_SCREENSHOT"):  # the README's picture: the banner and the first cards' plots
            tab.viewport(1280, 1150)
            Path(os.environ["ICLKD_SCREENSHOT"]).write_bytes(tab.screenshot())
        tab.viewport(390, 844, mobile=True, scale=2)
        phone = json.loads(tab.evaluate(PAGE_FACTS))
        phone_shot = tab.screenshot()
        errors, requests = tab.console_errors(), tab.requests()
    assert errors == []
    # data: URIs (images inside the SVG plots) are decoded in place, not fetched
    assert [r for r in requests if r != file_url(page) and not r.startswith("data:")] == [], "a network request"
    assert facts["scripts"] == 0
    assert facts["cards"] == [c["id"] for c in report["checks"]]
    assert {p["card"] for p in facts["plots"]} == set(facts["cards"]), "a card without a plot"
    assert all(p["width"] > 100 and p["height"] > 40 for p in facts["plots"] + phone["plots"])
    assert facts["scrollWidth"] <= 1280 and facts["widest"] <= 1280
    assert phone["scrollWidth"] <= 390 and phone["widest"] <= 390, "the page overflows a phone-width viewport"
    assert facts["links"] == ["tightness.html"]
    _not_blank(shot)
    _not_blank(phone_shot)


def test_page_is_self_contained(smoke):
    text = (smoke[0] / "r.html").read_text()
    assert "<script" not in text
    # nothing fetched: every src/href is a fragment, a data URI or a sibling page
    for ref in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert ref.startswith(("#", "data:")) or ref == "tightness.html", ref
    assert "@import" not in text and "url(http" not in text
    for check in smoke[1]["checks"]:
        assert f'id="{check["id"]}"' in text


def test_page_without_matplotlib_says_so(smoke):
    text = html.verify_page(smoke[1], plots=False)
    assert "<svg" not in text and "matplotlib is not installed" in text
    assert text.count('class="card"') == len(smoke[1]["checks"])


def test_statement_text_reads_the_statements_document(tmp_path):
    statement = html.statement_text("thm-4.1")
    assert statement is not None and statement.title.startswith("Theorem 4.1")
    assert "MMD" in statement.maths and "W̄(P)" in statement.words
    assert html.statement_text("thm-3.1b").title.startswith("Theorem 3.1(b)")
    assert html.statement_text("lemma-eta").title.startswith("Lemma: the learning-rate proxy")
    # sections whose heading names neither the id nor a numbered statement: found by the check's folder
    assert html.statement_text("lemma-features").title.startswith("Lemma: the feature maps converge")
    assert html.statement_text("thm-linear").title.startswith("Special case: linear attention")
    assert html.statement_text("no-such-claim") is None
    other = tmp_path / "statements.md"
    other.write_text("| id | kind | statement |\n|---|---|---|\n| `my-claim` | lemma | `a ≤ b` |\n\n"
                     "## `my-claim`: a is at most b\n\nIn words: a never exceeds b.\n\n- **Check** mine.\n")
    mine = html.statement_text("my-claim", other)
    assert (mine.title, mine.maths, mine.words) == ("`my-claim`: a is at most b", "`a ≤ b`", "In words: a never "
                                                                                           "exceeds b.")


def test_real_model_card_states_its_statement():
    """A real-model check ``ID@MODEL`` is stated by the section of ``ID``."""
    card = html.check_card({"id": "thm-4.1@minilm", "kind": "theorem", "status": "holds"}, plots=False)
    assert "Theorem 4.1: the bias of the distilled weights is linear in MMD" in card
    assert html.markdown_inline(html.statement_text("thm-4.1").maths) in card


def test_cards_state_the_statement_without_the_statements_document(monkeypatch, tmp_path):
    """An installed package has no docs/: each card states what its registered check states of itself."""
    import verification.real_models.checks  # noqa: F401  (registers the real-model checks)
    import verification.statements  # noqa: F401  (registers the statements)

    in_checkout = html.check_card({"id": "thm-4.1", "kind": "theorem", "status": "holds"}, plots=False)
    monkeypatch.setattr(html, "STATEMENTS_DOCUMENT", tmp_path / "absent.md")
    assert html.statement_text("thm-4.1") is None
    for cid, sentence in [("thm-4.1", "Theorem 4.1, the distilled weights&#x27; bias is linear in MMD"),
                          ("thm-4.1@minilm", "Theorem 4.1, the distilled weights&#x27; bias is linear in MMD"),
                          ("lemma-eta", "The learning-rate lemma, eta = N/(2D&#x27;) in log space")]:
        card = html.check_card({"id": cid, "kind": "theorem", "status": "holds"}, plots=False)
        statement = re.search(r'<div class="statement">(.*?)</div>', card).group(1)
        assert f"<p><strong>{sentence} (docs/statements.md#" in statement, statement
        assert html.html.escape(html.REGISTRY[cid].title) in statement
    installed = html.check_card({"id": "thm-4.1", "kind": "theorem", "status": "holds"}, plots=False)
    assert "Theorem 4.1: the bias" in in_checkout and "Theorem 4.1: the bias" not in installed
    assert html.statement_html("no-such-claim", None, "my title") == '<div class="statement"><p>my title</p></div>'


def test_real_model_figures_become_layer_by_head_heatmaps():
    pytest.importorskip("matplotlib", reason="the plots extra")
    layers, heads = 3, 4
    check = {"id": "thm-4.1@smollm2", "kind": "theorem", "status": "holds", "cases": 24, "worst": 0.5,
             "figures": {"layers": [0, 1, 2], "per_head_ratio": [[0.1 * (h + 1) for h in range(heads)]] * layers,
                         "ratio_by_layer_head_pair": [[[0.2, 0.4]] * heads] * layers,
                         "per_layer_head_rel_error": [[1e-15] * heads] * layers,
                         "per_layer_head_mean_log_eta": [[0.0] * heads] * layers}}
    captions = [caption for caption, _ in html.check_plots(check)]
    assert captions == ["tightness (bound / observed) per layer × head (per_head_ratio)",
                        "tightness (bound / observed) per layer × head (ratio_by_layer_head_pair, worst pair)",
                        "log10 of the error per layer × head (per_layer_head_rel_error)"]
    assert "<svg" in html.check_card(check)


# ------------------------------------------------------------------------------------------------ JUnit


def test_junit_of_the_smoke_run_validates(smoke):
    folder, report = smoke
    _validate(folder / "r.xml")
    root = ET.parse(folder / "r.xml").getroot()
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [c["id"] for c in report["checks"]]
    assert root.find("testsuite").get("failures") == "0" and root.find("testsuite").get("errors") == "0"
    refuted = [c for c in cases if c.get("name") == "conj-4.1"][0]
    assert refuted.find("failure") is None and "counterexample: " in refuted.find("system-out").text


def test_junit_maps_every_status(tmp_path):
    def check(cid, status, **extra):
        return {"id": cid, "kind": "conjecture" if status in ("refuted", "survives") else "theorem", "status": status,
                "cases": 3, "worst": 2.0, "worst_label": "ratio", "summary": f"{cid} summary \x07<&>",
                "elapsed_s": 1e-7, **extra}

    report = {"profile": "smoke", "seed": 1, "versions": {"jax": "x"},
              "checks": [check("a", "holds"), check("b", "violated", counterexample={"x": [1.0, "inf"]}),
                         check("c", "error", figures={"traceback": "Traceback ...\nValueError: bad"}),
                         check("d", "refuted", counterexample={"x": 1.0}), check("e", "survives"),
                         check("f", "inconclusive")]}
    path = tmp_path / "r.xml"
    path.write_text(junit.verify_junit(report))
    _validate(path)
    suite = ET.parse(path).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("6", "1", "1", "1")
    by_name = {c.get("name"): c for c in suite.findall("testcase")}
    assert by_name["b"].find("failure").get("message") == "b summary <&>"
    assert "ValueError: bad" in by_name["c"].find("error").text
    assert by_name["d"].find("failure") is None and '"x": 1.0' in by_name["d"].find("system-out").text
    assert by_name["f"].find("skipped") is not None
    assert all(len(c) == 1 for name, c in by_name.items() if name in "ae")  # system-out only: passed


def test_self_test_junit_and_page(tmp_path, capsys):
    xml, page = tmp_path / "s.xml", tmp_path / "s.html"
    assert cli.main(["verify", "--self-test", "--profile", "smoke", "--only", "lemma-eta", "--no-progress",
                     "--junit-xml", str(xml), "--html", str(page)]) == 0
    _validate(xml)
    cases = ET.parse(xml).getroot().findall("./testsuite/testcase")
    assert len(cases) == 4 and all(c.get("classname") == "iclkd.self-test.lemma-eta" for c in cases)
    assert all(c.find("failure") is None for c in cases)
    text = page.read_text()
    assert "4/4</strong> mutants caught" in text and "Lemma: the learning-rate proxy" in text
    escaped = junit.self_test_junit({"profile": "smoke", "seed": 0}, [
        {"check_id": "x", "mutant": "m", "description": "d", "baseline_status": "holds", "mutant_status": "holds",
         "caught": False}])
    assert "<failure" in escaped and 'failures="1"' in escaped


def test_screenshot_in_the_readme_exists():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (image,) = re.findall(r"!\[[^\]]*\]\((docs/img/[^)]+\.png)\)", readme.split("\n## ")[0])
    assert (Path(__file__).resolve().parents[2] / image).stat().st_size > 10_000


def test_search_page_and_the_verify_page_links_to_its_siblings(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plots extra")
    assert cli.main(["search", "thm-4.1", "--budget", "64", "--html", str(tmp_path / "search.html")]) == 0
    page = (tmp_path / "search.html").read_text()
    assert '<meta name="iclkd-page" content="search">' in page and "<script" not in page
    assert page.count("<svg") == page.count('class="card"') >= 1 and "best ratio (gradient)" in page
    (tmp_path / "notes.html").write_text("<html><title>not ours</title></html>")
    links = html.sibling_pages(tmp_path)
    assert [(name, kind) for name, kind, _ in links] == [("search.html", "search")]
    report = {"profile": "smoke", "seed": 0, "versions": {}, "checks": []}
    assert '<a href="search.html">iclkd search thm-4.1</a>' in html.verify_page(report, links=links)
