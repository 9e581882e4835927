"""Free loopback ports for apps and sidecars, never handed out twice by one runner.

A port is free when it can be bound now; another process may still take it before the child
binds it, in which case the child fails to start and its replica is restarted on new ports.
"""

from __future__ import annotations

import socket

__all__ = ["PortAllocator", "port_free"]

_HOST = "127.0.0.1"


def port_free(port: int, host: str = _HOST) -> bool:
    """True when nothing listens on ``host:port`` (TCP) and it can be bound. Like the
    servers the runner starts, it ignores connections still in TIME_WAIT there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    def __init__(self, host: str = _HOST) -> None:
        self._host = host
        self._taken: set[int] = set()

    def take(self, preferred: int | None = None) -> int:
        """``preferred`` when it is still free (a restart keeps its ports), else a fresh one."""
        if preferred and preferred not in self._taken and port_free(preferred, self._host):
            self._taken.add(preferred)
            return preferred
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self._host, 0))
                port = int(sock.getsockname()[1])
            if port not in self._taken:
                self._taken.add(port)
                return port
        raise OSError("no free port on the loopback interface")

    def release(self, *ports: int) -> None:
        for port in ports:
            self._taken.discard(port)

    def take_tcp_udp(self) -> int:
        """A port free for both TCP and UDP (DNS listens on both with one number)."""
        for _ in range(50):
            port = self.take()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((self._host, port))
                except OSError:
                    continue
            return port
        raise OSError("no port free for both TCP and UDP on the loopback interface")
