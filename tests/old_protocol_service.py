"""A service written only to the old system's protocol, as its users wrote them: stdlib only, fetches ``image_url``,
answers ``{success, result: {detections: [...]}}`` with the old field names (``class``, ``confidence``, ``bbox``).

Usage: ``python old_protocol_service.py PORTFILE``: listens on a free port, writes it to PORTFILE, serves until killed.
"""

import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with urllib.request.urlopen(req["image_url"], timeout=5) as resp:
            jpeg = resp.read()
        ok = jpeg[:2] == b"\xff\xd8"  # a JPEG
        answer = {"success": ok, "error": None if ok else "not a JPEG", "confidence": 0.9, "inference_time_ms": 1,
                  "result": {"detections": [{"class": "cigarette", "confidence": 0.9, "bbox": [10, 20, 30, 40],
                                             "task": req["task_id"], "cfg": req["algo_config"]}]}}
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1], "w") as f:
    f.write(str(server.server_address[1]))
server.serve_forever()
