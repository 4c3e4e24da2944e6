"""The built site, checked in a real browser the way a reader sees it.

Run by ``make site-check`` (part of ``make test``) after ``make book``. It serves
``_build/html`` on a loopback port and opens every page of every edition in headless
Chromium (Playwright, launched with the system browser: no browser download), at a
desktop and a phone width. CDN assets the pages request (MathJax) are answered from the
npm copy installed in ``tests/site/node_modules``, so the check runs offline while the
published pages stay standard. Full-page screenshots go to ``_build/screenshots/``.

Without Chromium the check is skipped with one line saying how to enable it; with
``SITE_CHECK_REQUIRED=1`` (set by ``.ci/run``) a missing browser is a failure.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import pathlib
import re
import shutil
import threading
import urllib.parse

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: The built site; SITE_HTML points the check at another build (e.g. of an older commit).
SITE = pathlib.Path(os.environ.get("SITE_HTML", ROOT / "_build" / "html"))
SCREENSHOTS = SITE.parent / "screenshots"
ASSETS = pathlib.Path(__file__).resolve().parent / "node_modules"
WIDTHS = {"desktop": 1280, "phone": 390}
#: CDN prefixes the pages request, and where the local copy of each lives.
CDN = {"https://cdn.jsdelivr.net/npm/mathjax@3/": ASSETS / "mathjax"}
#: Generated pages that are not part of the reading path but are still pages.
SKIP_PAGES = {"genindex.html", "search.html"}
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REQUIRED = os.environ.get("SITE_CHECK_REQUIRED", "") not in ("", "0")


def find_chromium() -> str | None:
    """The system Chromium: $CHROMIUM, else chromium / chromium-browser on PATH."""
    candidates = [os.environ.get("CHROMIUM")] + [
        shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
    ]
    return next((c for c in candidates if c and pathlib.Path(c).exists()), None)


def missing_prerequisite() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (make installs it)"
    if find_chromium() is None:
        return (
            "no Chromium found; install it (Debian: apt-get install chromium) "
            "or point $CHROMIUM at a Chromium/Chrome binary"
        )
    if not (ASSETS / "mathjax" / "es5" / "tex-mml-chtml.js").exists():
        return "the local MathJax copy is missing; run: npm ci --prefix tests/site"
    return None


def editions() -> dict[str, pathlib.Path]:
    """Each built edition's root: English at _build/html, Korean at _build/html/ko."""
    found = {"en": SITE}
    if (SITE / "ko" / "index.html").exists():
        found["ko"] = SITE / "ko"
    return found


def pages() -> list[tuple[str, str]]:
    """(edition, page path relative to the site root) of every HTML page."""
    result = []
    for edition, root in editions().items():
        for path in sorted(root.rglob("*.html")):
            relative = path.relative_to(root)
            if relative.parts[0] in ("_static", "_sources", "_images", "ko"):
                continue
            if str(relative) in SKIP_PAGES or is_redirect(path):
                continue
            result.append((edition, str(path.relative_to(SITE))))
    return result


def is_redirect(path: pathlib.Path) -> bool:
    """A generated page that only forwards the reader (index.html → the root page)."""
    return 'http-equiv="Refresh"' in path.read_text(encoding="utf-8")[:2000]


def redirects() -> list[pathlib.Path]:
    return [p for root in editions().values() for p in root.glob("*.html") if is_redirect(p)]


def repository_path() -> str:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url = config["repository"]["url"].rstrip("/")
    return urllib.parse.urlparse(url).path.strip("/")


LANGUAGE_SWITCH_JS = """() => {
  const links = [...document.querySelectorAll('a[hreflang]')];
  const seen = a => {
    const r = a.getBoundingClientRect();
    const style = getComputedStyle(a);
    return r.width > 0 && r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight
      && style.visibility !== 'hidden';
  };
  return {
    links: links.map(a => a.href),
    visible: links.some(seen),
    in_article: !!document.querySelector('p.language-switch a[hreflang]'),
  };
}"""


class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)


@functools.cache
def anchors_of(path: pathlib.Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").exists():
        pytest.fail("no built site in _build/html: run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    reason = missing_prerequisite()
    if reason:
        message = f"browser check skipped: {reason}"
        if REQUIRED:
            pytest.fail(message + " (SITE_CHECK_REQUIRED is set)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def serve_cdn(route) -> None:
    """Answer CDN requests from the local copies; refuse any other outside request."""
    url = route.request.url
    for prefix, folder in CDN.items():
        if url.startswith(prefix):
            local = folder / urllib.parse.urlparse(url[len(prefix) :]).path
            if local.is_file():
                route.fulfill(path=str(local))
                return
    route.abort()


# JavaScript run in the page, after MathJax has finished typesetting.
UNRENDERED_MATH_JS = r"""
() => {
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .cell_input";
  const lone = /(^|[^\\$])\$[^$\s][^$]*[^$\s\\]\$(?!\$)/;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const parent = n.parentElement;
    if (!parent || parent.closest(skip)) continue;
    const t = n.textContent;
    if (t.includes("$$") || /\\(frac|sqrt|operatorname)\b/.test(t) || lone.test(t)
        || /\\\(|\\\[/.test(t)) {
      bad.push(t.trim().slice(0, 120));
    }
  }
  return bad;
}
"""

# A <pre> outside notebook cells comes from Markdown. Markdown headings or LaTeX in one
# means prose was rendered as an (indented) code block.
PROSE_IN_CODE_JS = r"""
() => [...document.querySelectorAll("pre")]
  .filter(pre => !pre.closest(".cell_input, .cell_output, .output"))
  .map(pre => pre.textContent)
  .filter(t => /^\s*#{2,6}\s+\S/m.test(t) || /\\(frac|sqrt|operatorname|mathbb)\b|\$[^$\n]+\$/.test(t))
  .map(t => t.trim().slice(0, 120))
"""

IMAGES_JS = r"""
() => [...document.querySelectorAll("img")].map(img => {
  const hidden = img.closest(".toggle-hidden, details:not([open]), .dropdown:not(.toggle-shown)");
  const box = img.getBoundingClientRect();
  return {
    src: img.getAttribute("src"), alt: (img.getAttribute("alt") || "").trim(),
    loaded: img.complete && img.naturalWidth > 0,
    output: !!img.closest(".cell_output"), hidden: !!hidden,
    visible: box.width > 0 && box.height > 0 && getComputedStyle(img).visibility !== "hidden",
  };
})
"""

# Elements that stick out to the right at phone width, other than those inside a box that
# scrolls on its own (code, outputs, tables, math).
OVERFLOW_JS = r"""
() => {
  const width = document.documentElement.clientWidth;
  const over = document.documentElement.scrollWidth - width;
  if (over <= 1) return {over: 0, culprits: []};
  const scrolls = "pre, .highlight, .cell_output, .output, table, .table-wrapper, mjx-container, .MathJax, .math";
  const culprits = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && box.width > 0 && !el.closest(scrolls)) {
      culprits.push(el.tagName.toLowerCase() + (el.className ? "." + String(el.className).split(" ")[0] : ""));
    }
  }
  return {over, culprits: [...new Set(culprits)].slice(0, 8)};
}
"""

# Draws two Hangul syllables with the page's body font, and a private-use code point that
# no font has: a font without Hangul draws all three as the same tofu box.
HANGUL_GLYPH_JS = r"""
() => {
  const family = getComputedStyle(document.body).fontFamily;
  const draw = text => {
    const c = document.createElement("canvas"); c.width = 64; c.height = 64;
    const g = c.getContext("2d"); g.font = `40px ${family}`; g.fillText(text, 8, 48);
    return Array.from(g.getImageData(0, 0, 64, 64).data).join(",");
  };
  const han = draw("한"), guk = draw("국"), missing = draw("\uE000");
  return {family, drawn: han !== missing && guk !== missing && han !== guk};
}
"""


def link_problems(page_path: pathlib.Path, hrefs: list[str], origin: str) -> list[str]:
    problems = []
    for href in hrefs:
        if not href.startswith(origin):
            continue
        parsed = urllib.parse.urlparse(href)
        target = SITE / urllib.parse.unquote(parsed.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            problems.append(f"{href}: no such page")
            continue
        if parsed.fragment and target.suffix == ".html":
            fragment = urllib.parse.unquote(parsed.fragment)
            if fragment not in anchors_of(target):
                problems.append(f"{href}: no anchor #{fragment} in {target.name}")
    return problems


@pytest.mark.parametrize("path", redirects(), ids=lambda p: str(p.relative_to(SITE)))
def test_redirect_leads_to_an_existing_page(path):
    target = re.search(r'url=([^"]+)"', path.read_text(encoding="utf-8")).group(1)
    assert (path.parent / target.split("#")[0]).exists(), f"{path} forwards to missing {target}"


@pytest.mark.parametrize("width_name", list(WIDTHS))
@pytest.mark.parametrize(("edition", "page_path"), pages(), ids=lambda v: str(v))
def test_page_reads_well(browser, server, edition, page_path, width_name):
    width = WIDTHS[width_name]
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.route(
        "**/*",
        lambda route: (
            route.continue_() if route.request.url.startswith(server) else serve_cdn(route)
        ),
    )
    page = context.new_page()
    console_errors, failed = [], []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    page.on(
        "requestfailed",
        lambda r: failed.append(f"{r.url} ({r.failure})") if r.url.startswith(server) else None,
    )
    page.on(
        "response",
        lambda r: (
            failed.append(f"{r.url} (HTTP {r.status})")
            if r.url.startswith(server) and r.status >= 400
            else None
        ),
    )
    try:
        page.goto(server + page_path, wait_until="load")
        page.evaluate(
            "async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; }"
        )
        problems = []
        problems += [f"console error: {e}" for e in console_errors]
        problems += [f"failed local request: {f}" for f in failed]
        problems += [f"unrendered math: {t!r}" for t in page.evaluate(UNRENDERED_MATH_JS)]
        problems += [f"prose inside a code block: {t!r}" for t in page.evaluate(PROSE_IN_CODE_JS)]
        for image in page.evaluate(IMAGES_JS):
            if not image["loaded"]:
                problems.append(f"image not loaded: {image['src']}")
            if not image["alt"]:
                problems.append(f"image without alt text: {image['src']}")
            if image["output"] and not image["hidden"] and not image["visible"]:
                problems.append(f"notebook figure not visible: {image['src']}")
        hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        problems += link_problems(SITE / page_path, hrefs, server)
        relative = pathlib.PurePosixPath(page_path)
        if edition != "en":
            relative = relative.relative_to(edition)
        source = ROOT / (edition if edition != "en" else "") / relative.with_suffix(".ipynb")
        if source.exists():
            expected = (
                "https://colab.research.google.com/github/"
                f"{repository_path()}/blob/main/{source.relative_to(ROOT).as_posix()}"
            )
            colab = [h for h in hrefs if "colab.research.google.com" in h]
            if expected not in colab:
                problems.append(f"Colab link {colab} is not {expected}")
        if len(editions()) > 1:
            switch = page.evaluate(LANGUAGE_SWITCH_JS)
            if not switch["links"]:
                problems.append("no language switch (a link with hreflang)")
            # Seen without scrolling: in the sidebar on a desktop, above the title on a
            # content page at any width (a phone folds the sidebar away).
            elif not switch["visible"] and (width_name == "desktop" or switch["in_article"]):
                problems.append("the language switch is not visible on the first screen")
        if edition == "ko":
            if page.evaluate("() => document.documentElement.lang") != "ko":
                problems.append('Korean page does not declare lang="ko"')
            glyph = page.evaluate(HANGUL_GLYPH_JS)
            if not glyph["drawn"]:
                problems.append(f"Hangul is not drawn with the body font {glyph['family']}")
        if width_name == "phone":
            overflow = page.evaluate(OVERFLOW_JS)
            if overflow["over"] > 1:
                problems.append(
                    f"page overflows horizontally by {overflow['over']} px at {width} px: "
                    f"{overflow['culprits']}"
                )
        shot = SCREENSHOTS / width_name / page_path.replace(".html", ".png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)
        assert not problems, f"{page_path} at {width} px:\n  " + "\n  ".join(problems)
    finally:
        context.close()
