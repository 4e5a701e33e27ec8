"""How long a newcomer waits: from `make run` on a clean checkout (packages installed) to the login
page answering HTTP 200, to the login form drawn, and to the first page after logging in.

    .venv/bin/python benchmarks/first_page.py [--port 8617] [--customers 3000] [--keep]

It works in a fresh clone of this checkout's committed HEAD, in a temporary folder, with this
checkout's .venv linked in (the packages count as installed): nothing of this checkout, its store or
its demo logins is touched. There it runs `make -o .venv/.run-deps run`, logs in as ``demo_marketing`` with the
password `make run` printed, in headless Chromium (Debian's /usr/bin/chromium), and prints each
phase's seconds and each line `make run` printed with the second it appeared. Then it runs
`setup-demo` a second time and prints what it says about the logins. It stops the server it started
and removes the clone unless ``--keep`` (then it says where it is). Not a test: the numbers depend on
the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
WORK = ROOT  # the fresh clone main() works in


def fresh_clone() -> Path:
    """A clone of HEAD in a new temporary folder, with this checkout's .venv linked in."""
    work = Path(tempfile.mkdtemp(prefix="first-page-")) / "repo"
    subprocess.run(["git", "clone", "-q", "--local", str(ROOT), str(work)], check=True)
    (work / ".venv").symlink_to(ROOT / ".venv")
    return work


def password(username: str) -> str:
    for line in (WORK / "data" / "demo-logins.txt").read_text().splitlines():
        parts = line.split()
        if parts[:1] == [username]:
            return parts[1]
    raise SystemExit(f"{username} not in data/demo-logins.txt")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8617)
    parser.add_argument("--customers", type=int, default=None, help="DEMO_CUSTOMERS (default: the Makefile's)")
    parser.add_argument("--user", default="demo_marketing")
    parser.add_argument("--keep", action="store_true", help="leave the clone (its store and files) in place")
    args = parser.parse_args()

    global WORK
    WORK = fresh_clone()
    cmd = ["make", "-o", ".venv/.run-deps", "run", f"PORT={args.port}"]
    if args.customers:
        cmd.append(f"DEMO_CUSTOMERS={args.customers}")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[tuple[float, str]] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append((round(time.monotonic() - t0, 1), line.rstrip()))

    threading.Thread(target=read, daemon=True).start()
    base = f"http://localhost:{args.port}"
    marks: dict[str, float] = {}
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("make run stopped:\n" + "\n".join(x for _, x in lines))
            try:
                with urllib.request.urlopen(base + "/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        marks["login page HTTP 200"] = time.monotonic() - t0

        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(base + "/")
            page.get_by_label("Username", exact=True).wait_for(timeout=120000)
            marks["login form drawn"] = time.monotonic() - t0
            page.get_by_label("Username", exact=True).fill(args.user)
            page.get_by_label("Password", exact=True).fill(password(args.user))
            page.get_by_role("button", name="Log in", exact=True).click()
            page.locator('[data-testid="stMetric"], [data-testid="stPlotlyChart"]').first.wait_for(timeout=180000)
            page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=180000)
            marks["first page after login drawn"] = time.monotonic() - t0
            title = page.locator("h1").first.inner_text() if page.locator("h1").count() else ""
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the make process group this script started
        proc.wait(timeout=30)
    ready = next((t for t, line in lines if line.strip() == "store ready"), None)
    second = subprocess.run([sys.executable, "-m", "analytics", "setup-demo", "--quiet"], cwd=WORK,
                            capture_output=True, text=True)
    print(json.dumps({"command": " ".join(cmd), "seconds": {k: round(v, 1) for k, v in marks.items()},
                      "first_page_title": title}, ensure_ascii=False, indent=1))
    print("make run output (seconds since start):")
    for t, line in lines:
        print(f"  {t:6.1f}  {line}")
    print("second setup-demo run says:")
    print("  " + "\n  ".join(second.stdout.strip().splitlines()))
    if args.keep:
        print(f"the clone is kept in {WORK}")
    else:
        shutil.rmtree(WORK.parent, ignore_errors=True)
    # Last line: one compact object for `benchmarks/run.py first_page` (results.json).
    print(json.dumps({"customers": args.customers or "Makefile default", "demo_and_first_refresh_seconds": ready,
                      **{k.replace(" ", "_"): round(v, 1) for k, v in marks.items()},
                      "target_first_page_seconds": 60, "target_demo_and_refresh_seconds": 30}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
