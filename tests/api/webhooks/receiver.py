#!/usr/bin/env python3
"""A webhook receiver for reel's specs (tests/api/webhooks.rs).

Every call is verified with the PyPI `standardwebhooks` library (an implementation of the
Standard Webhooks specification independent of reel) and logged as JSON lines to LOG:
`{"phase": "received", "path", "id", "timestamp", "verified", "type", "seq", "video",
"payload", "concurrent"}` when a call arrives (`payload`: the verified body),
`{"phase": "answered", "path", "id", "status"}` after the answer. A call that does not verify
is answered 400.

Control: `POST /_control` with JSON `{"secrets": {PATH: "whsec_…"}, "status": 204,
"delay_ms": 0}` (merged into the current settings) sets the secret per path, the status of
every answer and a delay before it.

Usage: receiver.py LOG PORT   (PORT 0 picks one; prints "listening PORT" when ready)
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

LOCK = threading.Lock()
STATE = {"secrets": {}, "status": 204, "delay_ms": 0, "in_flight": 0}
LOG_PATH = sys.argv[1]


def log(entry):
    with LOCK:
        with open(LOG_PATH, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/_control":
            with LOCK:
                settings = json.loads(body or b"{}")
                STATE["secrets"].update(settings.pop("secrets", {}))
                STATE.update(settings)
            self.answer(204)
            return
        with LOCK:
            secret = STATE["secrets"].get(self.path)
            status, delay = STATE["status"], STATE["delay_ms"]
            STATE["in_flight"] += 1
            concurrent = STATE["in_flight"]
        entry = {
            "phase": "received",
            "path": self.path,
            "id": self.headers.get("webhook-id"),
            "timestamp": self.headers.get("webhook-timestamp"),
            "concurrent": concurrent,
            "verified": False,
        }
        try:
            if secret is None:
                raise ValueError("no secret for this path")
            payload = Webhook(secret).verify(body, dict(self.headers.items()))
            entry.update(
                verified=True,
                type=payload["type"],
                seq=payload["data"]["seq"],
                video=payload["data"]["id"],
                payload=payload,
            )
        except Exception as error:  # noqa: BLE001 - any failure is a failed verification
            entry["error"] = repr(error)
            status = 400
        log(entry)
        try:
            time.sleep(delay / 1000)
            self.answer(status)
        finally:
            with LOCK:
                STATE["in_flight"] -= 1
            log({"phase": "answered", "path": self.path, "id": entry["id"], "status": status})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
