"""How long the app takes to show a long room in headless Chromium, for `make bench`.

Usage: render.py PORT ROOM_ID MESSAGES — the room already holds MESSAGES messages (seq 1..N).
Prints one JSON object (milliseconds):
  open_ms          clicking the room → its newest messages on screen
  scroll_back_ms   scrolling to the top until the first message is there (every older page
                   fetched and inserted as a person scrolling up would cause)
  static_ms        the baseline, same browser, same run: N plain message elements (the same
                   markup shape, no app) inserted at once and laid out
"""

import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main():
    port, room, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="pincer-bench-render-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--no-proxy-server",
                 "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        d.set_script_timeout(600)
        d.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(d, 30, poll_frequency=0.05)
        wait.until(lambda _: d.find_elements(By.CSS_SELECTOR, f'#rooms [data-room-id="{room}"] button'))
        open_ms = d.execute_async_script(
            """
            const [room, done] = [arguments[0], arguments[arguments.length - 1]];
            const box = document.getElementById('messages');
            const t0 = performance.now();
            const shown = () => box.querySelector(`.msg[data-seq="${arguments[1]}"]`);
            new MutationObserver((_, obs) => {
              if (shown()) { obs.disconnect(); requestAnimationFrame(() => done(performance.now() - t0)); }
            }).observe(box, { childList: true });
            document.querySelector(`#rooms [data-room-id="${room}"] button`).click();
            """,
            room, count,
        )
        scroll_ms = d.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const box = document.getElementById('messages');
            const t0 = performance.now();
            const first = () => box.querySelector('.msg[data-seq="1"]');
            const kick = () => { box.scrollTop = 0; box.dispatchEvent(new Event('scroll')); };
            if (first()) return done(0);
            new MutationObserver((_, obs) => {
              if (first()) { obs.disconnect(); requestAnimationFrame(() => done(performance.now() - t0)); } else kick();
            }).observe(box, { childList: true });
            kick();
            """
        )
        shown = d.execute_script("return document.querySelectorAll('#messages > .msg[data-seq]').length")
        if shown != count:
            raise SystemExit(f"render bench: {shown} of {count} messages shown after scrolling back")
        static_ms = d.execute_async_script(
            """
            const [n, done] = [arguments[0], arguments[arguments.length - 1]];
            const box = document.getElementById('messages');
            const parts = [];
            for (let i = 1; i <= n; i++) {
              parts.push(`<article class="msg msg-own"><div class="bubble"><div class="body"><p>note ${i}</p></div>` +
                `<div class="stamp"><time>12:00</time></div></div></article>`);
            }
            const t0 = performance.now();
            box.innerHTML = parts.join('');
            void box.scrollHeight;
            requestAnimationFrame(() => done(performance.now() - t0));
            """,
            count,
        )
        print(json.dumps({"open_ms": open_ms, "scroll_back_ms": scroll_ms, "static_ms": static_ms}))
    finally:
        d.quit()


if __name__ == "__main__":
    main()
