"""Open an HTML page in headless Chromium: do its images render, does it log console errors?

Used by the report tests. :func:`chromium_or_skip` skips a test when Chromium is absent,
except under CI (``CI=true``), where its absence is a failure (``.ci/run`` installs it).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
from tests.conftest import unavailable

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]
WIDTH = 1200
MARK = "sparkae-browser-check"
#: Appended to a copy of the page: after load, every image's natural size and place.
PROBE = """<script>window.addEventListener("load", function () {
  var out = [], imgs = document.images;
  for (var i = 0; i < imgs.length; i++) {
    var r = imgs[i].getBoundingClientRect();
    out.push({alt: imgs[i].alt, complete: imgs[i].complete, naturalWidth: imgs[i].naturalWidth,
              naturalHeight: imgs[i].naturalHeight, left: r.left + window.scrollX,
              top: r.top + window.scrollY, width: r.width, height: r.height});
  }
  var pre = document.createElement("pre");
  pre.id = "%s";
  pre.style.display = "none";
  pre.textContent = JSON.stringify({images: out,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});</script>""" % MARK
CONSOLE = re.compile(r":CONSOLE[:(]|Uncaught", re.IGNORECASE)


def find_chromium() -> Optional[str]:
    """Path of a Chromium (or Chrome) binary, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def chromium_or_skip() -> str:
    """The Chromium binary; skip the test without one, but fail under CI."""
    path = find_chromium()
    if path is None:
        unavailable("headless Chromium is not installed (apt-get install -y chromium); the "
                    "browser check of the report needs it")
    return path


@dataclass
class PageCheck:
    """What Chromium saw: each image's natural size and place, console lines, the
    screenshot (RGB floats in [0, 1])."""

    images: List[Dict] = field(default_factory=list)
    console: List[str] = field(default_factory=list)
    screenshot: Optional[np.ndarray] = None

    def ink(self, image: Dict) -> float:
        """Share of the screenshot pixels inside ``image``'s box that are not white."""
        top, left = int(image["top"]), int(image["left"])
        box = self.screenshot[top:top + int(image["height"]), left:left + int(image["width"])]
        if box.size == 0:
            return 0.0
        return float((box.min(axis=2) < 0.9).mean())


def _run(chromium: str, args: List[str], timeout: int = 60) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="sparkae-chromium-") as profile:
        return subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)


def check_page(chromium: str, page: str, workdir: str) -> PageCheck:
    """Load ``page`` (an HTML file) twice in headless Chromium: once with a probe script
    that reports every image after load (``--dump-dom``), once for a screenshot of the
    whole page at the same width."""
    with open(page) as f:
        html = f.read()
    probed = os.path.join(workdir, "probed.html")
    with open(probed, "w") as f:
        f.write(html.replace("</body>", PROBE + "</body>") if "</body>" in html
                else html + PROBE)
    url = "file://" + os.path.abspath(probed)
    dom = _run(chromium, ["--virtual-time-budget=10000", f"--window-size={WIDTH},3000",
                          "--dump-dom", url])
    assert dom.returncode == 0, dom.stderr[-3000:]
    m = re.search(r'<pre id="%s"[^>]*>(.*?)</pre>' % MARK, dom.stdout, re.S)
    assert m, f"the probe did not run; stderr:\n{dom.stderr[-3000:]}"
    import html as htmllib

    probe = json.loads(htmllib.unescape(m.group(1)))
    check = PageCheck(images=probe["images"])
    shot = os.path.join(workdir, "screenshot.png")
    height = max(3000, int(probe["height"]) + 20)
    run = _run(chromium, [f"--screenshot={shot}", f"--window-size={WIDTH},{height}", url])
    assert run.returncode == 0 and os.path.exists(shot), run.stderr[-3000:]
    import matplotlib.image as mpimg

    with open(shot, "rb") as f:
        check.screenshot = mpimg.imread(io.BytesIO(f.read()), format="png")[:, :, :3]
    check.console = [line for line in (dom.stderr + run.stderr).splitlines()
                     if CONSOLE.search(line)]
    return check


def assert_renders(chromium: str, page: str, workdir: str, figures) -> None:
    """Every figure of ``page`` is decoded, laid out and drawn; the console is clean."""
    check = check_page(chromium, page, workdir)
    assert [i["alt"] for i in check.images] == list(figures)
    for image in check.images:
        assert image["complete"] and image["naturalWidth"] > 100, image
        assert image["naturalHeight"] > 100 and image["width"] > 100, image
        assert check.ink(image) > 0.02, (image["alt"], check.ink(image))
    assert not check.console, check.console
