"""Look at an executed notebook and a run's report page as a person would: in JupyterLab, in a real browser.

    python scripts/check_notebook_view.py RUN_DIR NOTEBOOK.ipynb [--shots DIR]

Starts `jupyter lab` on 127.0.0.1 (no token, a free port, RUN_DIR as its root), opens NOTEBOOK in headless
Chromium (Debian's `chromium`; nothing is downloaded at run time) and RUN_DIR/report.html from disk, saves a
screenshot of each, and checks the rendered pages: the notebook must show at least one image output in
JupyterLab's output area and the report at least one embedded PNG. Prints one JSON line; exit 0 when both
hold, 1 when not, 2 when Chromium or JupyterLab is missing (the caller skips).
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _browser(exe: str, url: str, shot: Path, wait_ms: int) -> str:
    """Render `url` headless: save a screenshot, return the DOM after `wait_ms` of page time."""
    common = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,2200",
              f"--virtual-time-budget={wait_ms}", "--user-data-dir=" + str(shot.parent / ".chromium")]
    subprocess.run(common + [f"--screenshot={shot}", url], capture_output=True, timeout=180)
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=180)
    return dom.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("notebook", help="an executed notebook inside RUN_DIR")
    ap.add_argument("--shots", default=None, help="folder for the screenshots (default RUN_DIR/screenshots)")
    args = ap.parse_args()
    exe = chromium()
    if exe is None or shutil.which("jupyter") is None and not Path(sys.executable).with_name("jupyter").exists():
        print(json.dumps({"skipped": "chromium or jupyter not installed"}))
        return 2
    run = Path(args.run_dir).resolve()
    shots = Path(args.shots or run / "screenshots").resolve()
    shots.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    jupyter = str(Path(sys.executable).with_name("jupyter")) if Path(sys.executable).with_name("jupyter").exists() \
        else shutil.which("jupyter")
    lab = subprocess.Popen([jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                            "--allow-root", "--IdentityProvider.token=", "--ServerApp.password=", f"--ServerApp.root_dir={run}",
                            "--ServerApp.disable_check_xsrf=True", "--LabApp.news_url=None",
                            "--LabServerApp.announcements_url=None"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result: dict = {"port": port}
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/lab", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            print(json.dumps({"error": "jupyter lab did not answer on 127.0.0.1 within 90 s"}))
            return 1
        nb_dom = _browser(exe, f"http://127.0.0.1:{port}/lab/tree/{args.notebook}", shots / "jupyterlab.png", 30000)
        report_dom = _browser(exe, (run / "report.html").as_uri(), shots / "report.png", 5000)
        result.update(notebook=args.notebook,
                      notebook_images=nb_dom.count("jp-RenderedImage"),
                      report_images=report_dom.count("data:image/png;base64"),
                      screenshots=[str(shots / "jupyterlab.png"), str(shots / "report.png")])
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
    ok = result["notebook_images"] >= 1 and result["report_images"] >= 1
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
