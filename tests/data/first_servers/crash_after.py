"""A select() loop with keep-alive that works, until a bug kills it: it raises after its 3,000th
request (standing for any fault that ends a server mid-run: an unhandled exception, a failed
assertion, memory).

What it shows: the server exits during the run; the run says so, with its exit status and the end of
its output.
"""

import select
import socket
import sys

host, port = "127.0.0.1", int(sys.argv[1])
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n"
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen(1024)
readers, answered = [server], 0
while True:
    ready, _, _ = select.select(readers, [], [])
    for sock in ready:
        if sock is server:
            readers.append(server.accept()[0])
        elif sock.recv(4096):
            sock.sendall(RESPONSE)
            answered += 1
            if answered == 3000:
                raise RuntimeError(f"a bug: request {answered} broke the server")
        else:
            readers.remove(sock)
            sock.close()
