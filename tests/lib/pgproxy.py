"""A TCP proxy in front of a PostgreSQL server that can cut a connection at the worst
moments of a write: in the middle of COPY data (the server must roll back), or right
after the server committed and before its acknowledgement reaches the client (the
client cannot know whether it committed). It parses the protocol's message framing only
(type byte + length); clients must connect with sslmode=disable."""
import random
import socket
import struct
import threading


class CutProxy:
    def __init__(self, target_unix_socket, seed=1):
        self.target = target_unix_socket
        self.rnd = random.Random(seed)
        self.lock = threading.Lock()
        self.cut_after_commit = 0   # cuts still to do, each after a commit
        self.cut_mid_copy = 0       # cuts still to do, each in the middle of COPY data
        self.done_after_commit = 0
        self.done_mid_copy = 0
        # the write watched: a COPY followed by this statement in the same transaction
        self.watch_tag = b'INSERT 0 1'
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopped = True
        self.listener.close()

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.target)
            except OSError:
                client.close()
                continue
            pair = {'closed': False}
            threading.Thread(target=self._up, args=(client, server, pair), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, pair), daemon=True).start()

    @staticmethod
    def _close(a, b, pair):
        pair['closed'] = True
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _take(self, what):
        with self.lock:
            if what == 'copy' and self.cut_mid_copy > 0 and self.rnd.random() < 0.3:
                self.cut_mid_copy -= 1
                self.done_mid_copy += 1
                return True
            if what == 'commit' and self.cut_after_commit > 0 and self.rnd.random() < 0.5:
                self.cut_after_commit -= 1
                self.done_after_commit += 1
                return True
        return False

    def _up(self, src, dst, pair):
        """client -> server: the startup packet has no type byte, then typed messages."""
        buf = b''
        started = False
        while not pair['closed']:
            try:
                data = src.recv(65536)
            except OSError:
                data = b''
            if not data:
                break
            buf += data
            out = b''
            while True:
                if not started:
                    if len(buf) < 4:
                        break
                    n = struct.unpack('!I', buf[:4])[0]
                    if len(buf) < n:
                        break
                    out, buf, started = out + buf[:n], buf[n:], True
                    continue
                if len(buf) < 5:
                    break
                n = struct.unpack('!I', buf[1:5])[0]
                if len(buf) < 1 + n:
                    break
                msg, buf = buf[:1 + n], buf[1 + n:]
                if msg[:1] == b'd' and self._take('copy'):
                    try:
                        dst.sendall(out)
                    except OSError:
                        pass
                    self._close(src, dst, pair)
                    return
                out += msg
            try:
                dst.sendall(out)
            except OSError:
                break
        if not pair['closed']:
            self._close(src, dst, pair)

    def _down(self, src, dst, pair):
        """server -> client: every message is typed. After the watched CommandComplete,
        wait for ReadyForQuery (the commit is done) and drop both instead of passing them."""
        buf = b''
        held = None
        after_copy = False
        while not pair['closed']:
            try:
                data = src.recv(65536)
            except OSError:
                data = b''
            if not data:
                break
            buf += data
            out = b''
            while len(buf) >= 5:
                n = struct.unpack('!I', buf[1:5])[0]
                if len(buf) < 1 + n:
                    break
                msg, buf = buf[:1 + n], buf[1 + n:]
                if held is not None:
                    held += msg
                    if msg[:1] == b'Z':  # committed: the client never hears of it
                        try:
                            dst.sendall(out)
                        except OSError:
                            pass
                        self._close(src, dst, pair)
                        return
                    continue
                if (msg[:1] == b'C' and after_copy and msg[5:].startswith(self.watch_tag)
                        and self._take('commit')):
                    held = msg
                    continue
                if msg[:1] == b'C':
                    after_copy = msg[5:].startswith(b'COPY ')
                out += msg
            try:
                dst.sendall(out)
            except OSError:
                break
        if not pair['closed']:
            self._close(src, dst, pair)
