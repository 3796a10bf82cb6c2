"""One connection at a time, a connection per request, as a first socket server is often written.

What it shows: it reads one request, answers it with HTTP/1.0 and closes, so every request costs the
client a new connection; and it parses whatever recv() returned without checking it, so a client that
connects and closes without sending a byte (a bare TCP readiness check) kills it with an IndexError.
"""

import socket
import sys

host, port = "127.0.0.1", int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen()
while True:
    conn, _ = server.accept()
    request = conn.recv(4096).decode()
    method, path = request.split()[0], request.split()[1]  # an empty request: IndexError, and the server is gone
    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n")
    conn.close()
