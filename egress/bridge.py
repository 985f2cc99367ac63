"""Runs inside the sandbox, before the agent: listens on 127.0.0.1 ports and forwards each
connection to a Unix socket bound into the sandbox (egress/proxy.py serves the other end).
The sandbox has no other way out. Standard library only: it runs with the sandbox's python3.

    python3 -I bridge.py PORT=SOCKET [PORT=SOCKET ...]

It returns once every port is listening, and goes on in the background until the sandbox ends.
"""

import os
import socket
import sys
import threading


def main(pairs):
    listeners = []
    for pair in pairs:
        port, _, path = pair.partition("=")
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))
        listener.listen(128)
        listeners.append((listener, path))
    if os.fork():
        os._exit(0)  # the agent may start: the ports are listening
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the sandbox's output ends when the agent's does
        os.dup2(null, fd)
    threads = [threading.Thread(target=accept, args=pair) for pair in listeners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def accept(listener, path):
    while True:
        client, _ = listener.accept()
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(path)
        except OSError:
            client.close()
            upstream.close()
            continue
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


def pump(source, sink):
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
