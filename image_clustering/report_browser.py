"""Headless Chromium for checking and timing the report (tests, ``scripts/bench_report.py``):
Debian's ``/usr/bin/chromium`` driven by Playwright, with no browser download and nothing that
talks to the network on its own."""
from __future__ import annotations

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-default-apps"]


def launch(playwright, executable: str = CHROMIUM):
    """A headless Chromium (Playwright ``Browser``); Playwright gives it a new empty profile
    (``--user-data-dir`` in a temporary folder) each time. WebGL runs on the CPU (SwiftShader)
    under ``--disable-gpu``."""
    return playwright.chromium.launch(executable_path=executable, headless=True, args=FLAGS)
