"""Helpers shared by the tests (conftest.py holds the fixtures)."""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"  # ../shared beside this checkout
SMS = SHARED / "data" / "sms_spam" / "SMSSpamCollection.tsv"


def in_ci() -> bool:
    """CI is set (CI=true, as CI services set it): nothing the tests need may be missing."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need(condition, why: str) -> None:
    """The one way a test says it cannot run here: skip with ``why`` (one
    line: what is missing and how to get it), or, when CI is set, fail with
    it: a CI run must not pass by skipping what it never ran."""
    if condition:
        return
    line = " ".join(str(why).split())
    if in_ci():
        pytest.fail(f"CI is set, so a missing requirement fails: {line}", pytrace=False)
    pytest.skip(line)


def need_sms() -> Path:
    need(SMS.is_file(), f"SMS Spam Collection not found at {SMS}: put the shared data folder beside this checkout "
                        "(../shared/data/sms_spam/SMSSpamCollection.tsv, from the UCI SMS Spam Collection)")
    return SMS


def majority_rate(y) -> float:
    """The accuracy of always answering the most frequent class of ``y``."""
    y = np.asarray(y)
    return float(np.bincount(y).max() / len(y))


def make_image_folder(root: Path, classes=("cat", "dog"), per_class=6, sizes=((20, 24), (32, 32), (17, 40))):
    """Write real PNGs of mixed sizes into class subfolders; class k is brighter."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        d = root / c
        d.mkdir(parents=True)
        for i in range(per_class):
            h, w = sizes[i % len(sizes)]
            arr = (rng.random((h, w, 3)) * 60 + 120 * k).clip(0, 255).astype(np.uint8)
            Image.fromarray(arr).save(d / f"img{i}.png")
    return root


def assert_one_line_error(r, *fragments, code=2):
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:"), lines[0]
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    assert "Traceback" not in r.stderr + r.stdout


# ---- report.html in a real browser -------------------------------------------------------------
def chromium() -> str:
    """Debian's chromium (installed by .ci/run); skips (fails under CI) without it."""
    import shutil

    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    need(exe is not None, "chromium not found: apt-get install chromium (the page tests open report.html in it)")
    return exe


# the browser's own traffic (network time, component updates, sign-in), not the page's: left out of the count
BROWSER_OWN = ("clients2.google.com/time/", "update.googleapis.com", "accounts.google.com",
               "optimizationguide-pa.googleapis.com", "content-autofill.googleapis.com", "redirector.gvt1.com")


_OWN_BASELINE: list[set[str]] = []


def _browser_own_requests() -> set[str]:
    """What this chromium asks for on its own (its version's preconnects and
    probes: 150 opens www.google.com:443 at start), recorded once per process
    by opening an empty page with the same flags; a page's own requests are
    the ones beyond these."""
    if not _OWN_BASELINE:
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            empty = Path(d) / "empty.html"
            empty.write_text("<!doctype html><title>empty</title>", encoding="utf-8")
            hits, _ = _chromium_requests(empty, Path(d) / "empty.png")
        _OWN_BASELINE.append(set(hits))
    return _OWN_BASELINE[0]


def open_in_chromium(page: Path, shot: Path) -> tuple[list, str]:
    """``page`` opened in headless chromium, a screenshot taken to ``shot``:
    (the requests it made, through a recording proxy on loopback, less the
    browser's own: those it makes for an empty page too; the rendered DOM)."""
    own = _browser_own_requests()
    hits, dom = _chromium_requests(page, shot)
    # "?": a connection that sent no request line within a second (chromium's preconnects, which come and go from
    # run to run); a request the page makes sends its line at once (the control test in test_report.py)
    return [h for h in hits if h not in own and h != "?"], dom


def _chromium_requests(page: Path, shot: Path) -> tuple[list, str]:
    """``page`` opened in headless chromium through a recording proxy: (every
    request line it got, less the known update and sync hosts; the DOM)."""
    import socket
    import subprocess
    import tempfile
    import threading

    exe = chromium()
    hits = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def record():
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            c.settimeout(1)
            try:
                hits.append(c.recv(300).decode(errors="replace").splitlines()[0])
            except (OSError, IndexError):
                hits.append("?")
            c.close()

    t = threading.Thread(target=record, daemon=True)
    t.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={d}/profile", f"--proxy-server=http://127.0.0.1:{srv.getsockname()[1]}",
                    "--proxy-bypass-list=<-loopback>", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-pings",
                    "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter"]
            r = subprocess.run([*base, "--window-size=1000,1400", f"--screenshot={shot}", page.as_uri()],
                               capture_output=True, text=True, timeout=120)
            assert shot.is_file(), r.stderr[-1500:]
            dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                                 timeout=120).stdout
    finally:
        stop.set()
        t.join(2)
        srv.close()
    return [h for h in hits if not any(b in h for b in BROWSER_OWN)], dom


def check_page(folder: Path, *expected: str, drawn: bool = True) -> dict:
    """FOLDER/report.html opened in headless chromium: it refers to no
    resource, requests nothing (every request goes through a recording
    proxy), its screenshot is not blank, and its rendered text holds each
    of ``expected`` (figures the caller takes from the run's JSON; matched
    against what the page shows, not its stylesheet or tooltips), and, with
    ``drawn``, no section says it could not be drawn. Returns
    {"size": bytes, "screenshot": a copy of it, "text": the page's text}."""
    import re
    from html import unescape as html_unescape

    from PIL import Image

    page = Path(folder) / "report.html"
    assert page.is_file(), f"{page} was not written"
    html = page.read_text(encoding="utf-8")
    # nothing that would fetch: no script, stylesheet, image or frame from anywhere (the SVG namespace is a name)
    assert not re.search(r"<script|<link|<iframe|<img|@import|url\(", html, re.I), "the page refers to a resource"
    assert not re.findall(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", html, re.I), "the page fetches from the network"
    keep = Path(folder).parent / f"{Path(folder).name}.page.png"  # beside the folder: tests run side by side
    keep.unlink(missing_ok=True)
    hits, dom = open_in_chromium(page, keep)
    assert not hits, f"the page made network requests: {hits}"
    img = np.asarray(Image.open(keep).convert("L"), dtype=np.float32)
    dark = float((img < 200).mean())
    assert img.std() > 10 and dark > 0.005, (img.std(), dark)  # drawn (a blank page: 0 and 0)
    shown = re.sub(r"<(style|title)\b[^>]*>.*?</\1>", " ", dom, flags=re.S | re.I)  # not the CSS, nor tooltips
    text = html_unescape(" ".join(re.sub(r"<[^>]+>", " ", shown).split()))
    assert len(text) > 200, dom[:500]
    if drawn:
        assert "could not be drawn" not in text, text[text.find("could not be drawn") - 300:][:600]
    for e in expected:
        assert e in text, (e, text[:3000])
    return {"size": page.stat().st_size, "screenshot": keep, "text": text}
