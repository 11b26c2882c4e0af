"""report.html in a real browser: headless Chromium loads it with no request leaving the page, and
every plot decodes. Skips only when no Chromium is installed (CI installs Debian's `chromium`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from tests.report.test_report import classification_task, make_run

from selfguide.config import RunConfig
from selfguide.report.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Appended to a copy of the page: after load, record every resource the page fetched (data: URIs
# are not fetches), every Content-Security-Policy violation, and whether each image decoded.
PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images).map(img => ({alt: img.alt, ok: img.complete && img.naturalWidth > 0, width: img.naturalWidth}));
  const fetched = performance.getEntriesByType("resource").map(e => e.name);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({images, fetched, violations: window.violations, verdict: document.querySelector("p.verdict")?.getBoundingClientRect().top});
  document.body.appendChild(out);
});
</script>
"""
# Any request other than to the page itself or a data: URI breaks this policy and is reported.
CSP = """<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>window.violations = []; document.addEventListener("securitypolicyviolation", e => window.violations.push(e.blockedURI));</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH: apt-get install chromium (CI does)")
def test_report_loads_offline_and_its_images_decode(tmp_path):
    task = classification_task()
    make_run(tmp_path, task, trained=True)
    write_report(tmp_path, task, RunConfig())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("<head>\n", "<head>\n" + CSP + "\n", 1).replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / "profile"
    result = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1200,900", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert probe["fetched"] == [] and probe["violations"] == []
    assert len(probe["images"]) == 3 and all(image["ok"] and image["width"] >= 600 for image in probe["images"])
    assert probe["verdict"] < 200  # the verdict is on the first screen, not 740 px down
