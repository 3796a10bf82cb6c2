"""A select() loop that answers the first request of each connection and never reads that connection
again, but keeps it open and says nothing about closing it (HTTP/1.1: the client keeps it alive).

What it shows: every request after a connection's first waits forever (until the client's timeout)
while the server sits idle: nothing it does is slow, it just stopped reading.
"""

import select
import socket
import sys

host, port = "127.0.0.1", int(sys.argv[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((host, port))
server.listen(1024)
readers, held = [server], []
while True:
    ready, _, _ = select.select(readers, [], [])
    for sock in ready:
        if sock is server:
            conn, _ = server.accept()
            readers.append(conn)
            continue
        if not sock.recv(4096):
            readers.remove(sock)
            sock.close()
            continue
        sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, World!\n")
        readers.remove(sock)  # done with this client, it thinks: the socket stays open, unread
        held.append(sock)
