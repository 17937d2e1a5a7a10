"""Make nbs/images/serve.png, the README's picture of the web demo: `python .ci/screenshot.py RUN_OR_ARTIFACT`.

Starts `phi-cls serve` on the given classifier, fills in the example with an arithmetic slip, clicks Classify and saves a
screenshot taken by Debian's headless Chromium (through Playwright; nothing is downloaded)."""
import os, socket, subprocess, sys, time, urllib.request
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def main(model, out=REPO / "nbs" / "images" / "serve.png"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "phi_cls.cli", "serve", "--model", str(model), "--port", str(port), "--checker"],
                              env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try: urllib.request.urlopen(url, timeout=2); break
            except OSError: time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url, wait_until="networkidle")
            from phi_cls.serve import EXAMPLE_ERROR
            page.locator("#question textarea").fill(EXAMPLE_ERROR[0])
            page.locator("#solution textarea").fill(EXAMPLE_ERROR[1])
            page.locator("#classify").click()
            page.locator("#verdict").get_by_text("Decided by").wait_for(timeout=120_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(out))
            browser.close()
    finally:
        server.terminate()
    img = Image.open(out).convert("RGB")
    img.resize((img.width * 3 // 4, img.height * 3 // 4), Image.LANCZOS).quantize(colors=128).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main(*sys.argv[1:2])
