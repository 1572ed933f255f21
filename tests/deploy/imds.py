#!/usr/bin/env python3
"""Stands in for the EC2 instance metadata service (IMDSv2) inside one instance's network
namespace of the deployment test: a session token from PUT /latest/api/token, then
instance-id and autoscaling/target-lifecycle-state, the latter read from STATE_FILE at each
request, so the test decides when the autoscaling group scales the instance in.

    imds.py ADDRESS PORT INSTANCE_ID STATE_FILE"""

import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

ADDRESS, PORT, INSTANCE_ID, STATE_FILE = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
TOKEN = "test-imds-session"


class Metadata(BaseHTTPRequestHandler):
    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path == "/latest/api/token":
            self.answer(200, TOKEN)
        else:
            self.answer(404, "not found")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self.answer(401, "IMDSv2 token required")
        elif self.path == "/latest/meta-data/instance-id":
            self.answer(200, INSTANCE_ID)
        elif self.path == "/latest/meta-data/autoscaling/target-lifecycle-state":
            with open(STATE_FILE) as f:
                self.answer(200, f.read().strip())
        else:
            self.answer(404, "not found")

    def log_message(self, *args):
        pass


HTTPServer((ADDRESS, PORT), Metadata).serve_forever()
