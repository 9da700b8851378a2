"""Browser tests of the built book (`_build/html`), offline, in Debian's headless Chromium.

Run after `bash scripts/fetch_site_assets.sh && jupyter-book build . -W --keep-going`:

    pytest -m browser tests/test_site.py

The site is served by `python -m http.server` on 127.0.0.1; every request to another
host is blocked and recorded (the site must work without a network).  Each page of
`_toc.yml` is loaded once and the per-page findings are shared by the tests below.
Every page is also loaded at 1280 and 800 px wide: no equation, table, code block or output may be clipped
or scroll sideways there, no figure may be shown below 70% of its width, and a full-page screenshot of each
goes to `_build/screenshots/<width>/` (look at them; CI keeps them as artifacts).

Skipped (with the reason) when /usr/bin/chromium, Playwright or the built site is missing.
Environment overrides: VIB_BOOK_HTML (built site folder), VIB_CHROMIUM (browser binary).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import pytest
import yaml

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = Path(os.environ.get("VIB_BOOK_HTML", ROOT / "_build" / "html"))
CHROMIUM = os.environ.get("VIB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = ROOT / "_build" / "screenshots"  # full-page screenshots of every page and width (CI artifacts)
MAX_PAGE_HEIGHT = 12_000  # px at 1280 px: the longest page a learner is asked to read in one go
WIDTHS = (1280, 800)  # page widths at which nothing may be clipped or scroll sideways
MIN_FIGURE_SCALE = 0.7  # a figure shown below 70% of its pixel width has illegible labels
EXPLORER_PAGE = "book/05_explore"
TIMEOUT_MS = 20_000

# Visible text outside code that still holds TeX delimiters means math was not typeset.
_RAW_TEX_JS = r"""() => {
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'TEXTAREA', 'MJX-CONTAINER', 'NOSCRIPT']);
  const root = document.querySelector('main') || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el && el !== root.parentElement; el = el.parentElement) {
        if (skip.has(el.tagName) || el.classList.contains('highlight')) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  const hits = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const t = n.textContent;
    if (/\$\$|\\\(|\\\[|\\begin\{/.test(t)) hits.push(t.trim().slice(0, 80));
  }
  return hits;
}"""

_WAIT_MATHJAX_JS = """async () => {
  if (!document.querySelector('script[src*="mathjax"]')) return 'no-mathjax';
  for (let i = 0; i < 100 && !(window.MathJax && MathJax.startup && MathJax.startup.promise); i++)
    await new Promise(r => setTimeout(r, 50));
  if (!(window.MathJax && MathJax.startup && MathJax.startup.promise)) return 'mathjax-not-started';
  await MathJax.startup.promise;
  return 'typeset';
}"""

_IMAGES_JS = """async () => {
  const imgs = [...document.querySelectorAll('article img, main .bd-content img')];
  const uniq = [...new Set(imgs)];
  await Promise.all(uniq.map(img => {
    if (img.loading === 'lazy') img.loading = 'eager';
    if (img.complete && img.naturalWidth > 0) return null;
    return new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r);
                              setTimeout(r, 5000); });
  }));
  return uniq.map(img => ({src: (img.currentSrc || img.src || '').slice(0, 120),
                           id: img.id, alt: img.getAttribute('alt'),
                           complete: img.complete, width: img.naturalWidth}));
}"""

# With every <details> and dropdown opened (solutions, hidden cells, the closing note): what scrolls sideways,
# what sticks out of the text column, which figures are shown below their minimum scale, and whether the page
# itself scrolls.
_LAYOUT_JS = r"""(MIN_SCALE) => {
  for (const d of document.querySelectorAll('details')) d.open = true;
  // sphinx-togglebutton's dropdowns (the exercises' solutions) hide their body with a class, not <details>
  for (const t of document.querySelectorAll('.toggle-hidden')) t.classList.remove('toggle-hidden');
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const col = article.getBoundingClientRect();  // the text column; sidebars and page navigation are not checked
  const text = el => (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 70);
  const visible = el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
  const out = {scroll: [], overflow: [], small: [], page: null, col: [col.left, col.right]};
  const seen = new Set();
  const check = (sel, kind) => {
    for (const el of article.querySelectorAll(sel)) {
      if (!visible(el) || seen.has(el)) continue;
      seen.add(el);
      const r = el.getBoundingClientRect();
      const ox = getComputedStyle(el).overflowX;
      if (el.scrollWidth > el.clientWidth + 1 && ox !== 'visible')
        out.scroll.push(`${kind}: scrolls ${el.scrollWidth - el.clientWidth}px: ${text(el)}`);
      if (r.right > col.right + 1 || r.left < col.left - 1)
        out.overflow.push(`${kind}: spans ${Math.round(r.left)}-${Math.round(r.right)}px, `
                          + `column ${Math.round(col.left)}-${Math.round(col.right)}: ${text(el)}`);
    }
  };
  check('mjx-container[display="true"]', 'math');
  check('mjx-container', 'inline math');
  check('div.math', 'math');
  check('.pst-scrollable-table-container', 'table');
  check('table', 'table');
  check('div.cell_input pre, div.highlight pre', 'code');
  check('div.cell_output pre', 'output');
  check('p code, li code, td code', 'inline code');
  for (const img of article.querySelectorAll('div.cell_output img, figure img')) {
    if (!visible(img) || !img.naturalWidth) continue;
    const scale = img.getBoundingClientRect().width / img.naturalWidth;
    const label = (img.getAttribute('alt') || img.src).slice(0, 50);
    if (scale < MIN_SCALE)
      out.small.push(`figure at ${Math.round(100 * scale)}% (${img.naturalWidth}px wide): ${label}`);
  }
  const de = document.documentElement;
  if (de.scrollWidth > window.innerWidth + 1)
    out.page = `page scrolls sideways: ${de.scrollWidth}px in ${window.innerWidth}px`;
  return out;
}"""

_MATH_JS = """() => {
  const math = [...document.querySelectorAll('.math')];
  return {math: math.length,
          untypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
          containers: document.querySelectorAll('mjx-container').length};
}"""


@dataclass
class PageReport:
    name: str
    url: str
    status: int | None = None
    final_url: str = ""
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    mathjax: str = ""
    math: dict = field(default_factory=dict)
    raw_tex: list[str] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    colab_links: list[str] = field(default_factory=list)
    widget_views: int = 0
    rendered_widgets: int = 0
    widget_text: list[str] = field(default_factory=list)
    text: str = ""  # every text node of the page, collapsed boxes included


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return [re.sub(r"\.(ipynb|md|rst)$", "", f) for f in files]


TOC_PAGES = _toc_files()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def site_url():
    if not (HTML_DIR / "index.html").is_file():
        pytest.skip(
            f"the book is not built ({HTML_DIR}/index.html missing): run "
            "`bash scripts/fetch_site_assets.sh && jupyter-book build . -W --keep-going` first"
        )
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(HTML_DIR)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"http.server exited with {proc.returncode}")
                time.sleep(0.1)
        else:
            pytest.fail(f"http.server did not answer on {url}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def _new_context(browser, site_url, report: PageReport | None = None):
    """A browser context that only lets requests to the local server through."""
    host = urlparse(site_url).netloc
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)

    def route(r):
        u = urlparse(r.request.url)
        if u.scheme in ("data", "blob", "about") or u.netloc == host:
            r.continue_()
        else:
            if report is not None:
                report.external_requests.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return context


def _attach_listeners(page, report: PageReport, host: str) -> None:
    page.on("console", lambda m: m.type == "error" and report.console_errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: report.console_errors.append(f"uncaught: {e}"))

    def on_failed(req):
        if urlparse(req.url).netloc == host:  # external ones are aborted on purpose, recorded by the route
            report.failed_requests.append(f"{req.url} ({req.failure})")

    def on_response(resp):
        if resp.status >= 400 and urlparse(resp.url).netloc == host:
            report.failed_requests.append(f"{resp.url} (HTTP {resp.status})")

    page.on("requestfailed", on_failed)
    page.on("response", on_response)


def _settle(page) -> str:
    """Wait until MathJax has typeset and the network is quiet; return the MathJax state."""
    state = page.evaluate(_WAIT_MATHJAX_JS)
    try:
        page.wait_for_load_state("networkidle", timeout=5000)
    except Exception:  # noqa: BLE001 - a page that never goes idle is reported by the other checks
        pass
    return state


@pytest.fixture(scope="session")
def reports(browser, site_url) -> dict[str, PageReport]:
    """Load every _toc.yml page once (plus the site root) and record what happened."""
    host = urlparse(site_url).netloc
    out: dict[str, PageReport] = {}
    for name in ["(root)", *TOC_PAGES]:
        url = site_url if name == "(root)" else urljoin(site_url, f"{name}.html")
        rep = PageReport(name=name, url=url)
        context = _new_context(browser, site_url, rep)
        page = context.new_page()
        _attach_listeners(page, rep, host)
        try:
            resp = page.goto(url, wait_until="load")
            rep.status = resp.status if resp else None
            if name == "(root)":  # index.html is a meta-refresh redirect to the landing page
                page.wait_for_url(re.compile(re.escape(TOC_PAGES[0]) + r"\.html"), timeout=5000)
            rep.final_url = page.url
            rep.mathjax = _settle(page)
            rep.math = page.evaluate(_MATH_JS)
            rep.raw_tex = page.evaluate(_RAW_TEX_JS)
            rep.images = page.evaluate(_IMAGES_JS)
            rep.links = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
            rep.text = " ".join(page.evaluate("() => document.body.textContent").split())
            rep.colab_links = [u for u in rep.links if u.startswith("https://colab.research.google.com")]
            rep.widget_views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
            if rep.widget_views:
                try:
                    page.wait_for_selector(".jupyter-widgets, .widget-inline-hbox", timeout=10_000)
                except Exception:  # noqa: BLE001 - counted below
                    pass
                rep.rendered_widgets = page.locator(".jupyter-widgets, .widget-inline-hbox").count()
            rep.widget_text = page.eval_on_selector_all(
                "div.cell_output",
                r"els => els.map(e => e.textContent).filter(t => /Loading widget|[A-Z][a-z]+(Box|Slider|Button)\(|"
                r"Widget\(/.test(t)).map(t => t.trim().slice(0, 60))",
            )
        except Exception as exc:  # noqa: BLE001 - keep going, the tests report it per page
            rep.console_errors.append(f"navigation: {exc}")
        finally:
            context.close()
        out[name] = rep
    return out


def _fail_if(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{what}:\n  " + "\n  ".join(problems), pytrace=False)


def test_pages_load_offline_without_errors(reports):
    problems = []
    for rep in reports.values():
        if rep.status != 200:
            problems.append(f"{rep.name}: HTTP status {rep.status} for {rep.url}")
        problems += [f"{rep.name}: {e}" for e in rep.console_errors]
        problems += [f"{rep.name}: failed request {r}" for r in rep.failed_requests]
        problems += [f"{rep.name}: request to another host {r}" for r in rep.external_requests]
    _fail_if(problems, "pages with errors or network requests off 127.0.0.1")


# Sentences about how the book was made, or what its authors lacked, that a reader's page must not hold
# (the collapsed "How this page was made" note keeps provenance and timing, as facts).
NOT_THE_READERS_VOICE = ("we could not consult the paper", "no GPU was available to us", "the test suite checks",
                         "in the reduced test mode", "the loop never waits on the host")


def test_pages_speak_about_vib_not_about_how_they_were_made(reports):
    problems = [f"{rep.name}: {phrase!r}" for rep in reports.values() for phrase in NOT_THE_READERS_VOICE
                if phrase.lower() in rep.text.lower()]
    if not any(rep.text for rep in reports.values()):
        problems.append("no page text was read")
    _fail_if(problems, "sentences about how the book was made")


# "1 threads", "1 seeds": a count of one with a plural noun; "4–4%": a range whose ends print the same
BAD_PLURAL = re.compile(r"(?<![\d.,])1 (threads|seeds|runs|models|epochs|draws|images|passes|bits|points|steps)\b")
EMPTY_RANGE = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*[–-]\s*\1(?![\d.])\s*%")


def test_no_page_prints_1_threads_or_an_empty_range(reports):
    problems = []
    for name, report in reports.items():
        for pattern in (BAD_PLURAL, EMPTY_RANGE):
            problems += [f"{name}: {m.group(0)!r}" for m in pattern.finditer(report.text)]
    _fail_if(problems, "a plural after 1, or a range whose two ends are equal")


def test_math_is_typeset(reports):
    problems, pages_with_math = [], 0
    for rep in reports.values():
        if rep.math.get("math"):
            pages_with_math += 1
            if rep.mathjax != "typeset":
                problems.append(f"{rep.name}: has math but MathJax state is {rep.mathjax!r}")
            if rep.math["untypeset"]:
                problems.append(f"{rep.name}: math not typeset: {rep.math['untypeset'][:3]}")
            if not rep.math["containers"]:
                problems.append(f"{rep.name}: no <mjx-container> although the page has math")
        if rep.raw_tex:
            problems.append(f"{rep.name}: raw TeX left in visible text: {rep.raw_tex[:3]}")
    _fail_if(problems, "math problems")
    if not pages_with_math:
        pytest.fail("no page of the book has math; expected at least one", pytrace=False)


def test_images_load_and_have_alt_text(reports):
    problems = []
    for rep in reports.values():
        if rep.name == "(root)":
            continue
        for img in rep.images:
            label = img["id"] or img["src"] or "<img without src>"
            if not (img["complete"] and img["width"] > 0):
                problems.append(f"{rep.name}: image did not load: {label}")
            if not (img["alt"] or "").strip():
                problems.append(f"{rep.name}: image without alt text: {label}")
    _fail_if(problems, "image problems")


def test_no_widget_that_needs_a_kernel_is_drawn(reports):
    """A static page cannot run the Python behind a widget: it shows no widget, live copy or text stand-in."""
    problems = []
    for rep in reports.values():
        if rep.widget_views or rep.rendered_widgets:
            problems.append(f"{rep.name}: {rep.widget_views} stored widget view(s), {rep.rendered_widgets} drawn")
        problems += [f"{rep.name}: widget stand-in text {t!r}" for t in rep.widget_text]
    _fail_if(problems, "widgets that need a kernel")


def test_colab_links_point_at_the_chapter_notebooks(reports):
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = cfg.get("repository") or {}
    owner_repo = urlparse(repo["url"]).path.strip("/").removesuffix(".git")
    branch = repo.get("branch") or "main"
    prefix = (repo.get("path_to_book") or "").strip().strip("/")
    prefix = "" if prefix in ("", ".") else prefix + "/"
    colab = ((cfg.get("launch_buttons") or {}).get("colab_url") or "https://colab.research.google.com").rstrip("/")
    # (path_to_book "." makes the theme write ".../blob/main/./book/x.ipynb"; `a.href` gives the URL the
    # browser really opens, with the "./" segment resolved away)
    notebooks = [
        n for n in TOC_PAGES if (ROOT / f"{n}.ipynb").is_file() or (HTML_DIR / "_sources" / f"{n}.ipynb").is_file()
    ]
    if not notebooks:
        pytest.skip("no chapter of _toc.yml is a notebook")
    problems = []
    for name in notebooks:
        want = f"{colab}/github/{owner_repo}/blob/{branch}/{prefix}{name}.ipynb"
        got = sorted(set(reports[name].colab_links))
        if got != [want]:
            problems.append(f"{name}: Colab link(s) {got or 'missing'}, expected {want}")
    _fail_if(problems, "Colab launch links")


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("id", "name") and v:
                self.ids.add(v)


def test_internal_links_resolve(reports, site_url):
    host = urlparse(site_url).netloc
    targets: dict[str, set[str]] = {}
    for rep in reports.values():
        for href in rep.links:
            if urlparse(href).netloc != host:
                continue
            page, frag = urldefrag(href)
            targets.setdefault(page, set())
            if frag:
                targets[page].add(frag)
    assert targets, "no internal links found"
    problems = []
    for page, frags in sorted(targets.items()):
        try:
            with urllib.request.urlopen(page, timeout=10) as resp:
                body = resp.read().decode("utf-8", "replace") if page.endswith((".html", "/")) else ""
        except urllib.error.HTTPError as exc:
            problems.append(f"{page}: HTTP {exc.code}")
            continue
        if body and frags:
            parser = _Ids()
            parser.feed(body)
            missing = sorted(f for f in frags if urllib.request.unquote(f) not in parser.ids)
            problems += [f"{page}#{f}: no such anchor" for f in missing]
    _fail_if(problems, "broken internal links")


def test_beta_explorer_changes_its_chart_when_the_slider_moves(browser, site_url):
    """The explorer runs in the page with no kernel (Vega-Lite, vendored): moving the slider redraws the embedding,
    moves the marked point of the information plane, and rewrites the line of numbers."""
    if EXPLORER_PAGE not in TOC_PAGES:
        pytest.skip(f"{EXPLORER_PAGE} is not in _toc.yml")
    context = _new_context(browser, site_url)
    try:
        page = context.new_page()
        page.goto(urljoin(site_url, f"{EXPLORER_PAGE}.html"), wait_until="load")
        if not page.locator("div.vib-explorer").count():
            pytest.fail(f"{EXPLORER_PAGE} has no explorer (div.vib-explorer); are the notebook's outputs stored?",
                        pytrace=False)
        page.wait_for_selector("div.vib-explorer[data-ready='1']", timeout=30_000)
        slider = page.locator("div.vib-explorer input[type='range']")
        n_max = int(slider.evaluate("el => el.max"))
        assert n_max >= 3, "the explorer has fewer than four β"
        ticks = page.locator("div.vib-explorer span").all_inner_texts()
        assert len(ticks) == n_max + 1 and ticks[0] == "0.001" and ticks[-1] == "1", ticks

        def state():
            return page.evaluate("""() => {
                const svg = document.querySelector('div.vib-explorer svg');
                const pts = [...svg.querySelectorAll('g.concat_0_marks path')].slice(0, 20)
                    .map(p => p.getAttribute('transform')).join(';');
                const mark = svg.querySelector('g.concat_1_layer_2_marks path');
                return [pts, mark ? mark.getAttribute('transform') : '',
                        document.querySelector('div.vib-explorer p').textContent];
            }""")

        first = state()
        assert first[0] and first[1] and first[2].startswith("β = 0.001"), first
        slider.focus()
        page.keyboard.press("ArrowRight")  # a real input event, as a reader's keyboard would give
        page.wait_for_function("() => document.querySelector('div.vib-explorer p').textContent.startsWith('β = 0.0')"
                               " && !document.querySelector('div.vib-explorer p').textContent.startsWith('β = 0.001')")
        second = state()
        assert second[0] != first[0], "moving the slider did not redraw the embedding"
        assert second[1] != first[1], "moving the slider did not move the marked point of the information plane"
        page.locator("div.vib-explorer input[type='checkbox']").uncheck()  # one scale for every β
        page.wait_for_timeout(300)
        assert state()[0] != second[0], "the axes toggle did not rescale the embedding"
    finally:
        context.close()


@pytest.fixture(scope="session")
def layouts(browser, site_url) -> dict[tuple[int, str], dict]:
    """Every page at each width in WIDTHS: the layout findings, and a full-page screenshot saved to SCREENSHOT_DIR."""
    out = {}
    for width in WIDTHS:
        folder = SCREENSHOT_DIR / str(width)
        folder.mkdir(parents=True, exist_ok=True)
        context = _new_context(browser, site_url)
        page = context.new_page()
        page.set_viewport_size({"width": width, "height": 900})
        try:
            for name in TOC_PAGES:
                resp = page.goto(urljoin(site_url, f"{name}.html"), wait_until="load")
                assert resp and resp.status == 200, f"{name} at {width}px: HTTP {resp.status if resp else None}"
                _settle(page)
                page.evaluate(_IMAGES_JS)
                height = page.evaluate("document.documentElement.scrollHeight")  # as a reader first sees it
                found = page.evaluate(_LAYOUT_JS, MIN_FIGURE_SCALE)  # opens every collapsed box
                found["height"] = height
                path = folder / f"{name.replace('/', '_')}.png"
                page.screenshot(path=str(path), full_page=True)
                found["screenshot"] = path
                out[width, name] = found
        finally:
            context.close()
    return out


def test_nothing_is_clipped_or_scrolls_sideways(layouts):
    problems = []
    for (width, name), found in layouts.items():
        problems += [f"{name} at {width}px: {p}" for p in found["scroll"] + found["overflow"]]
        if found["page"]:
            problems.append(f"{name} at {width}px: {found['page']}")
    _fail_if(problems, "math, tables, code or outputs wider than the page (break the line, or narrow it)")


def test_figures_are_shown_at_their_minimum_scale(layouts):
    problems = [f"{name} at {width}px: {p}" for (width, name), found in layouts.items() for p in found["small"]]
    _fail_if(problems, f"figures shown below {MIN_FIGURE_SCALE:.0%} of their width (make them narrower)")


def test_every_page_is_at_most_12000_px_high_at_1280_px(layouts):
    """A learner finishes a page: at 1280 px none is longer than MAX_PAGE_HEIGHT (collapsed boxes closed)."""
    heights = {name: found["height"] for (width, name), found in layouts.items() if width == 1280}
    assert heights, "no page was measured at 1280 px"
    # the heights beside the screenshots, for the reader of a CI run (and a note's before/after)
    (SCREENSHOT_DIR / "heights-1280.json").write_text(json.dumps(heights, indent=1) + "\n")
    too_long = [f"{name}: {h} px" for name, h in heights.items() if h > MAX_PAGE_HEIGHT]
    _fail_if(too_long, f"pages longer than {MAX_PAGE_HEIGHT} px at 1280 px (move long tables to a page of their own)")


def test_every_page_has_full_page_screenshots(layouts):
    for (width, name), found in layouts.items():
        path = found["screenshot"]
        assert path.is_file() and path.stat().st_size > 10_000, f"{name} at {width}px: no usable screenshot {path}"


def test_the_site_builds_from_the_stored_outputs_without_torch(tmp_path):
    """The Pages workflow renders the book in a venv without torch (requirements-book.txt): build it here with torch
    made unimportable, warnings as errors, into a folder of its own."""
    stub = tmp_path / "stub" / "torch"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('torch is not installed (a render-only build)')\n")
    jb = Path(sys.executable).parent / "jupyter-book"
    if not jb.exists():
        pytest.skip("jupyter-book is not installed beside this interpreter")
    env = {**os.environ, "PYTHONPATH": str(stub.parent)}
    out = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(tmp_path / "site"), "-W", "--keep-going"],
                         capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "site" / "_build" / "html" / "book" / "07_adversarial.html").exists()
    needs = [line.split("#")[0].strip() for line in (ROOT / "requirements-book.txt").read_text().splitlines()]
    assert any(n.startswith("jupyter-book") for n in needs) and not any(n.startswith("torch") for n in needs)
