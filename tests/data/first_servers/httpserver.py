"""Python's own http.server, as a first server is often written: ThreadingHTTPServer speaking HTTP/1.1.

What it shows: its listen backlog is 5 (socketserver's request_queue_size), so 100 users connecting at
once overflow the listen queue and wait for the kernel's SYN retransmits (1 s, 3 s); and it sends a
response's head and body in two send() calls, so with Nagle's algorithm on, the body waits for the
client's delayed ACK (about 40 ms on Linux) on every response of a kept-alive connection.
`--nodelay` sets TCP_NODELAY (StreamRequestHandler.disable_nagle_algorithm): the 40 ms go.
`--backlog N` sets request_queue_size: the listen queue holds N.
"""

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"Hello, World!\n"


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive (HTTP/1.0, the default, closes after each response)

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()  # the head goes out here, in one send
        self.wfile.write(BODY)  # and the body in a second one

    def log_message(self, *args):
        pass  # one line per request would slow it down more than anything measured here


parser = argparse.ArgumentParser()
parser.add_argument("port", type=int)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--nodelay", action="store_true", help="TCP_NODELAY: no wait for the delayed ACK")
parser.add_argument("--backlog", type=int, default=None, help="listen backlog (socketserver's default: 5)")
args = parser.parse_args()
Hello.disable_nagle_algorithm = args.nodelay
if args.backlog is not None:
    ThreadingHTTPServer.request_queue_size = args.backlog
ThreadingHTTPServer((args.host, args.port), Hello).serve_forever()
