"""A thread per connection that answers every request with a malformed head: a status line, then the
body where header lines belong (a first attempt that forgot the blank line and the headers).

What it shows: every response is refused by the client (a header line must be `name: value`, and the
head ends with an empty line), so every request fails; the row is not a result to rank.
"""

import socket
import sys
import threading

host, port = "127.0.0.1", int(sys.argv[1])


def handle(conn):
    with conn:
        while conn.recv(4096):  # one read per request, as a first attempt does
            conn.sendall(b"HTTP/1.1 200 OK\r\nHello, World!\r\n\r\n")


server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen(1024)
while True:
    conn, _ = server.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
