#!/usr/bin/python3
"""The fleet page (nodes/core/page.c, GET /) in headless Chromium.

A core runs as `tinylcm run graphs/core.yaml` on a free loopback port; a
device registers and posts a drift package (tests/core/fbwrite.py): one
drift event whose frame has a real 28x28 PNG attached, and a quarantine
batch of two samples with thumbnails. Frame ids are above 2^53, as a
device's clock-based ids are. Debian's `chromium` then loads the page,
driven over the DevTools protocol (a minimal websocket client below, the
standard library only), with real mouse clicks and typing:

1. without a token the page asks for one; a wrong one typed in and
   applied shows the 401; the token in the #token= fragment loads the
   page and is taken out of the address;
2. the device is listed (platform, packages, drift events, labels
   waiting); the event awaits validation with its text (detector, metric,
   value, threshold, the frame id digit for digit), its image and both
   thumbnails, each pixel read back through a canvas;
3. typing a label and clicking Validate: the event leaves the page, the
   device shows 2 labels waiting, and the API agrees: the event is
   validated with that label and the device's feedback holds one label
   per sample.
No script error happens on the page throughout.

usage: page_test.py TINYLCM REPO_ROOT
Skips (77) without chromium, unless CI=true (then it fails).
"""
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fbwrite as fb  # noqa: E402
from api_test import check, fails, uuid7  # noqa: E402

ADMIN = "page-test-admin"
ADMIN_H = {"Authorization": "Bearer " + ADMIN}
DEV = "page-dev-1"
BIG = 2 ** 62  # frame ids above 2^53: exact only as integers
THUMB1 = (4, 3, bytes(range(10, 130, 10)))
THUMB2 = (3, 2, bytes([0, 255, 17, 34, 51, 68]))
W = 28
IMG_PX = bytes((x * 9 + y * 3) % 256 for y in range(W) for x in range(W))
TIMEOUT = 60  # seconds for one wait: a hang fails, never a wait
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def png_gray(w, h, px):
    """An 8-bit gray PNG of px (row-major), no filter."""
    def chunk(typ, data):
        return (struct.pack(">I", len(data)) + typ + data +
                struct.pack(">I", zlib.crc32(typ + data)))
    rows = b"".join(b"\0" + px[y * w:(y + 1) * w] for y in range(h))
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# ---- the core -----------------------------------------------------------------

def req(port, method, path, body=None, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        h = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        try:
            j = json.loads(data)
        except ValueError:
            j = None
        return r.status, j, data
    finally:
        c.close()


def start_core(tinylcm, root, work):
    pf = os.path.join(work, "core.port")
    env = dict(os.environ, CORE_STORE=os.path.join(work, "core.store"),
               CORE_LISTEN="http://127.0.0.1:0", CORE_PORT_FILE=pf,
               CORE_ADMIN_TOKEN=ADMIN, CORE_API_KEY="", CORE_TLS_CERT="",
               CORE_TLS_KEY="")
    log = open(os.path.join(work, "core.log"), "w")
    p = subprocess.Popen([tinylcm, "run",
                          os.path.join(root, "graphs", "core.yaml"),
                          "--headless"], env=env, stdout=log,
                         stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT
    while not os.path.exists(pf):
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise RuntimeError("the core did not start: " +
                               open(log.name).read()[-2000:])
        time.sleep(0.02)
    return p, int(open(pf).read())


def seed(port):
    """Register DEV and post its drift package; the event's id and the
    device token."""
    st, j, _ = req(port, "POST", "/api/v1/devices/register",
                   {"device_id": DEV, "platform": "linux-aarch64"})
    check(st == 201 and j and j.get("token"),
          "register %s: 201 (%s)" % (DEV, st))
    tok = (j or {}).get("token", "")
    pid = uuid7()
    items = [fb.drift_event(0, "drift.knn_distance", "distance",
                            "mean_distance", 3.25, 1.5, 4000,
                            1795000000123456789, BIG + 5),
             fb.quarantine_batch([
                 fb.sample(BIG + 7, 1795000000000000007,
                           1795000000000000017, "Coat", 0.375, 2.5, 3,
                           [0.5, -1.25], THUMB1),
                 fb.sample(BIG + 9, 1795000000000000009,
                           1795000000000000019, "Coat", 0.25, 1.25, 5,
                           [2.0], THUMB2)], seq=1)]
    body = fb.package(pid, DEV, "drift_event", items, priority=2,
                      created_ns=1795000000200000000, seq=1,
                      attachments=[("frame-%d.png" % (BIG + 5), "image/png",
                                    png_gray(W, W, IMG_PX))])
    st, j, _ = req(port, "POST", "/api/v1/packages", body,
                   {"Authorization": "Bearer " + tok, "X-Device-ID": DEV,
                    "Idempotency-Key": pid,
                    "Content-Type": "application/x-tinylcm-package"})
    check(st == 200 and j == {"id": pid, "status": "stored"},
          "the drift package: 200 stored (%s %r)" % (st, j))
    return pid + ".0", tok


# ---- a minimal websocket client (RFC 6455) and the DevTools protocol --------

class WebSocket:
    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.s = socket.create_connection((u.hostname, u.port),
                                          timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16))
        self.s.sendall(b"GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                       b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: %s\r\n"
                       b"Sec-WebSocket-Version: 13\r\n\r\n" %
                       (u.path.encode(), u.hostname.encode(), u.port, key))
        head = b""
        while b"\r\n\r\n" not in head:
            b = self.s.recv(4096)
            if not b:
                raise ConnectionError("websocket: closed during handshake")
            head += b
        head, _, self.buf = head.partition(b"\r\n\r\n")
        want = base64.b64encode(hashlib.sha1(key + self.GUID).digest())
        lines = head.split(b"\r\n")
        hdr = {k.strip().lower(): v.strip() for k, _, v in
               (ln.partition(b":") for ln in lines[1:])}
        if b" 101 " not in lines[0] + b" " or \
                hdr.get(b"sec-websocket-accept") != want:
            raise ConnectionError("websocket handshake: %r" % head[:200])

    def _read(self, n):
        while len(self.buf) < n:
            b = self.s.recv(65536)
            if not b:
                raise ConnectionError("websocket: closed")
            self.buf += b
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self, op, data):
        hdr = bytes([0x80 | op])
        n = len(data)
        if n < 126:
            hdr += bytes([0x80 | n])
        elif n < 65536:
            hdr += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            hdr += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.s.sendall(hdr + mask + bytes(b ^ mask[i % 4]
                                          for i, b in enumerate(data)))

    def send(self, text):
        self._frame(0x1, text.encode())

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7f
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            op = b0 & 0x0f
            if op == 0x9:
                self._frame(0xa, data)
                continue
            if op == 0x8:
                raise ConnectionError("websocket: closed by the browser")
            if op in (0x0, 0x1, 0x2):
                msg += data
                if b0 & 0x80:
                    return msg.decode()

    def close(self):
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.s.close()


class Browser:
    """One headless Chromium with one page, driven over DevTools."""

    def __init__(self, chromium, work):
        self.prof = os.path.join(work, "chromium-profile")
        os.mkdir(self.prof)
        self.log = open(os.path.join(work, "chromium.log"), "w")
        self.p = subprocess.Popen(
            [chromium] + CHROMIUM_FLAGS +
            ["--user-data-dir=" + self.prof, "--remote-debugging-port=0",
             "--window-size=1200,900", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT,
            env=dict(os.environ, HOME=work), start_new_session=True)
        pf = os.path.join(self.prof, "DevToolsActivePort")
        deadline = time.monotonic() + TIMEOUT
        while not (os.path.exists(pf) and
                   len(open(pf).read().split("\n")) >= 2):
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start: " +
                                   open(self.log.name).read()[-2000:])
            time.sleep(0.05)
        port = int(open(pf).read().split("\n")[0])
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        c.request("GET", "/json/list")
        targets = json.loads(c.getresponse().read())
        c.close()
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.n = 0
        self.errors = []  # script exceptions on the page
        self.call("Runtime.enable")
        self.call("Page.enable")

    def call(self, method, **params):
        self.n += 1
        i = self.n
        self.ws.send(json.dumps({"id": i, "method": method,
                                 "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("method") == "Runtime.exceptionThrown":
                d = m["params"]["exceptionDetails"]
                self.errors.append(d.get("exception", {}).get(
                    "description", d.get("text")))
            if m.get("id") == i:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr,
                      returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError("JS error in %r: %s" % (expr[:100], d.get(
                "exception", {}).get("description", d.get("text"))))
        return r["result"].get("value")

    def wait(self, expr):
        """Poll expr until it is truthy; its value, or None at the
        timeout."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.05)
        return None

    def navigate(self, url):
        self.call("Page.navigate", url=url)

    def click(self, sel):
        """A real left click in the middle of the element (scrolled into
        view), after checking that the element is what is there."""
        pt = self.eval("""(() => {
            const e = document.querySelector(%s);
            if (!e) return null;
            e.scrollIntoView({block: 'center'});
            const r = e.getBoundingClientRect();
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            return [x, y, document.elementFromPoint(x, y) === e];
        })()""" % json.dumps(sel))
        if not pt or not pt[2]:
            raise RuntimeError("click %s: %s" % (
                sel, "no such element" if not pt else "covered"))
        for t in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=t, x=pt[0], y=pt[1],
                      button="none" if t == "mouseMoved" else "left",
                      clickCount=0 if t == "mouseMoved" else 1)

    def type(self, text):
        self.call("Input.insertText", text=text)

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


# what an <img> shows, read back through a canvas (blob: URLs are
# same-origin: the canvas is not tainted): [width, height, gray pixels]
PIXELS_JS = """((img) => {
    if (!img || !img.complete || !img.naturalWidth) return null;
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data, px = [];
    for (let i = 0; i < d.length; i += 4) px.push(d[i]);
    return [c.width, c.height, px];
})(%s)"""


def page_checks(b, port, ev):
    base = "http://127.0.0.1:%d/" % port
    # 1. the admin token
    b.navigate(base)
    msg = b.wait("document.getElementById('err') && "
                 "document.getElementById('err').textContent")
    check(msg == "Enter the admin token.",
          "without a token the page asks for one (%r)" % (msg,))
    b.click("#tok")
    b.type("not-the-admin-token")
    b.click("#save")
    msg = b.wait("document.getElementById('err').textContent"
                 ".startsWith('401') && "
                 "document.getElementById('err').textContent")
    check(bool(msg), "a wrong token typed in: the page shows the 401 (%r)" %
          (msg,))
    b.navigate("about:blank")
    b.wait("location.href === 'about:blank'")
    b.navigate(base + "#token=" + ADMIN)
    ok = b.wait("document.body && document.body.dataset.loaded === '1'")
    check(bool(ok) and b.eval("document.getElementById('err')"
                              ".textContent") == "",
          "with #token= the page loads without an error")
    check(b.eval("location.href") == base,
          "the token is taken out of the address (%r)" %
          b.eval("location.href"))
    # 2. the device and the event
    rows = b.eval("[...document.querySelectorAll('#devices tbody tr')]"
                  ".map(tr => [tr.dataset.device, "
                  "...[...tr.cells].map(td => td.textContent)])")
    want = [DEV, DEV, "linux-aarch64", "1", "0", "1", "0"]
    got = rows[0][:3] + rows[0][4:] if rows and len(rows[0]) == 8 else rows
    check(rows and len(rows) == 1 and got == want and
          rows[0][3].endswith(" s ago"),
          "the device listed: %r" % (rows,))
    evs = b.eval("[...document.querySelectorAll('#events .ev')]"
                 ".map(e => [e.dataset.event, e.firstChild.textContent])")
    want_text = ("%s: drift.knn_distance on mean_distance = 3.25 "
                 "(threshold 1.50), frame %d, " % (DEV, BIG + 5))
    check(evs and len(evs) == 1 and evs[0][0] == ev and
          evs[0][1].startswith(want_text) and evs[0][1].endswith(" s ago"),
          "the event awaits validation: %r" % (evs,))
    sel = "#events .ev[data-event=%s]" % json.dumps(ev)
    b.wait("[...document.querySelectorAll(%s)].every(i => i.complete)" %
           json.dumps(sel + " img"))
    big = b.eval(PIXELS_JS % ("document.querySelector(%s)" %
                              json.dumps(sel + " img.big")))
    check(big == [W, W, list(IMG_PX)],
          "its image: the frame's 28x28 PNG, every pixel (%s)" %
          ("exact" if big == [W, W, list(IMG_PX)] else
           "got %r" % (big[:2] if big else big,)))
    thumbs = b.eval("[...document.querySelectorAll(%s)].map(i => %s)" % (
        json.dumps(sel + " img:not(.big)"), PIXELS_JS % "i"))
    want_t = [[t[0], t[1], list(t[2])] for t in (THUMB1, THUMB2)]
    check(thumbs == want_t,
          "both sample thumbnails, every pixel (%s)" %
          ("exact" if thumbs == want_t else "got %r, alts %r" % (
              thumbs, b.eval("[...document.querySelectorAll(%s)]"
                             ".map(i => i.alt)" %
                             json.dumps(sel + " img:not(.big)")))))
    # 3. validate with a label
    b.click(sel + " input.label")
    b.type("Bag")
    check(b.eval("document.querySelector(%s).value" %
                 json.dumps(sel + " input.label")) == "Bag",
          "the label typed into the event's field")
    b.click(sel + " button.validate")
    done = b.wait("!!document.getElementById('none') && "
                  "!document.querySelector('#events .ev') && "
                  "document.querySelector('#devices tbody tr')"
                  ".lastChild.textContent === '2'")
    check(bool(done) and b.eval("document.getElementById('err')"
                                ".textContent") == "",
          "after Validate: nothing left to validate, 2 labels waiting, "
          "no error")


def api_checks(port, ev, tok):
    st, j, _ = req(port, "GET", "/api/v1/drift/events/" + ev,
                   headers=ADMIN_H)
    j = j or {}
    check(st == 200 and j.get("status") == "validated" and
          j.get("label") == "Bag" and
          [d.get("truth") for d in j.get("sample_details", [])] ==
          ["Bag", "Bag"],
          "API: the event is validated with Bag, both samples too (%r)" %
          ({k: j.get(k) for k in ("status", "label")},))
    st, j, raw = req(port, "GET", "/api/v1/devices/%s/feedback" % DEV,
                     headers={"Authorization": "Bearer " + tok,
                              "X-Device-ID": DEV})
    got = [(x.get("frame_id"), x.get("label"), x.get("source"))
           for x in (j or {}).get("labels", [])]
    want = [(BIG + 7, "Bag", "drift_validation"),
            (BIG + 9, "Bag", "drift_validation")]
    check(st == 200 and got == want,
          "API: the device's feedback holds Bag for both samples (%r)" %
          (got,))
    st, j, _ = req(port, "GET", "/api/v1/devices/" + DEV, headers=ADMIN_H)
    check((j or {}).get("feedback_pending") == 2,
          "API: the device has 2 labels waiting")


def main():
    tinylcm, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        print("skip: no chromium (Debian package chromium; "
              "tools/install-deps installs it)")
        return 1 if os.environ.get("CI") == "true" else 77
    work = tempfile.mkdtemp(prefix="tlcm-core-page-")
    core = browser = None
    try:
        core, port = start_core(tinylcm, root, work)
        ev, tok = seed(port)
        browser = Browser(chromium, work)
        page_checks(browser, port, ev)
        check(browser.errors == [], "no script error on the page (%r)" %
              (browser.errors,))
        api_checks(port, ev, tok)
    finally:
        if browser:
            browser.close()
        if core:
            core.send_signal(signal.SIGTERM)
            try:
                rc = core.wait(timeout=60)
            except subprocess.TimeoutExpired:
                core.kill()
                rc = core.wait()
            check(rc == 0, "the core stops cleanly (rc %d)" % rc)
        if fails:
            for name in ("core.log", "chromium.log"):
                p = os.path.join(work, name)
                if os.path.exists(p):
                    print("---- %s (tail)" % name)
                    print(open(p, errors="replace").read()[-3000:])
        shutil.rmtree(work, ignore_errors=True)
    print("%d checks failed" % len(fails) if fails else "all checks passed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
