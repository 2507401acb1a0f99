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

    def _relay(self, src, dst, pair, frame):
        """Pass whole messages from src to dst; frame(buf) returns (bytes to pass, bytes
        kept for later, cut now?). A cut closes both sides after passing what precedes."""
        buf = b''
        while not pair['closed']:
            try:
                data = src.recv(65536)
            except OSError:
                data = b''
            if not data:
                break
            out, buf, cut = frame(buf + data)
            try:
                dst.sendall(out)
            except OSError:
                break
            if cut:
                self._close(src, dst, pair)
                return
        if not pair['closed']:
            self._close(src, dst, pair)

    @staticmethod
    def _messages(buf, typed=True):
        """Split off whole messages: [(message, type)], rest."""
        msgs = []
        while True:
            head = 1 if typed else 0
            if len(buf) < head + 4:
                return msgs, buf
            n = struct.unpack('!I', buf[head:head + 4])[0]
            if len(buf) < head + n:
                return msgs, buf
            msgs.append((buf[:head + n], buf[:1] if typed else b''))
            buf = buf[head + n:]

    def _up(self, src, dst, pair):
        """client -> server: the startup packet has no type byte, then typed messages;
        a cut mid-COPY drops a CopyData message and everything after it."""
        state = {'started': False}

        def frame(buf):
            out = b''
            if not state['started']:
                msgs, buf = self._messages(buf, typed=False)
                if not msgs:
                    return b'', buf, False
                out, state['started'] = msgs[0][0], True
                buf = b''.join(m for m, _ in msgs[1:]) + buf
            msgs, rest = self._messages(buf)
            for m, kind in msgs:
                if kind == b'd' and self._take('copy'):
                    return out, b'', True
                out += m
            return out, rest, False
        self._relay(src, dst, pair, frame)

    def _down(self, src, dst, pair):
        """server -> client: after the watched CommandComplete that follows a COPY's, hold
        it until ReadyForQuery (the commit is done), then cut instead of passing them."""
        state = {'held': False, 'after_copy': False}

        def frame(buf):
            out = b''
            msgs, rest = self._messages(buf)
            for m, kind in msgs:
                if state['held']:
                    if kind == b'Z':  # committed: the client never hears of it
                        return out, b'', True
                    continue
                if (kind == b'C' and state['after_copy'] and m[5:].startswith(self.watch_tag)
                        and self._take('commit')):
                    state['held'] = True
                    continue
                if kind == b'C':
                    state['after_copy'] = m[5:].startswith(b'COPY ')
                out += m
            return out, rest, False
        self._relay(src, dst, pair, frame)
