"""The assessor's view: docs/ml/index.html and every page it links, opened in a real headless Chromium.

Each linked page must load (HTTP 200 from a loopback server), every image on it must have decoded
(naturalWidth > 0), and every local link on the index must resolve. Files git ignores on purpose (the
multi-MB Evidently HTML written by `make all`) are skipped when absent, since a fresh checkout lacks them.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from ml.config import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DOCS = ROOT / "docs"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip

pytestmark = pytest.mark.xdist_group("browser")


@pytest.fixture(scope="module")
def server():
    if not (DOCS / "ml" / "index.html").exists():
        pytest.skip("docs/ml/index.html not built (make report)")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(DOCS))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/ml/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium: `make browser` installs Debian's chromium")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def ignored_by_git(path: Path) -> bool:
    run = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, capture_output=True)
    return run.returncode == 0


def local_target(url: str, base: str) -> Path | None:
    parsed = urlparse(url)
    if not url.startswith(base.split("/ml/")[0]):
        return None
    return DOCS / parsed.path.lstrip("/")


def test_index_and_every_linked_page_load_with_their_images(server, browser):
    page = browser.new_page()
    assert page.goto(server + "index.html").status == 200
    assert "opslab" in page.title()
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.src, e.complete && e.naturalWidth > 0])"
    )
    assert links and images, "the index links no pages or shows no charts"
    broken_images = [src for src, ok in images if not ok]
    assert not broken_images, f"images that did not load on the index: {broken_images[:5]}"

    missing, pages = [], []
    for url in sorted(set(links)):
        target = local_target(url, server)
        if target is None:
            continue
        if not target.exists():
            if not ignored_by_git(target):
                missing.append(url)
            continue
        if target.suffix == ".html":
            pages.append(url)
    assert not missing, f"links on the index to files that do not exist: {missing}"
    assert sum("/html/" in u for u in pages) >= 9 and any("/model_cards/" in u for u in pages)

    failures = []
    for url in pages:
        response = page.goto(url, wait_until="load")
        if response is None or response.status != 200:
            failures.append(f"{url}: HTTP {response.status if response else 'no response'}")
            continue
        bad = page.eval_on_selector_all(
            "img", "els => els.filter(e => !(e.complete && e.naturalWidth > 0)).map(e => e.src)"
        )
        failures += [f"{url}: image {src} did not load" for src in bad]
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
            target = local_target(urljoin(url, href), server)
            if target is not None and not target.exists() and not ignored_by_git(target):
                failures.append(f"{url}: broken link {href}")
    assert not failures, "\n".join(failures[:20])
