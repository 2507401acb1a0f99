"""server_log_event_counts, computed as pgwatch does from the server's csvlog: RAISE
WARNING and failed statements are counted by severity for the source's database and in
total, each record once, whether the file is read here (same host, readable) or through
pg_read_binary_file (pgreaper running as a user who cannot read the server's files).
A server without csvlog makes the metric unavailable, said once."""
import os
import pwd
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  server_log_event_counts:
    sqls:
      11: |-
        /* placeholder: the collector reads the server log itself */
'''

SOURCES = '''
- name: db1
  conn_str: {conn}
  custom_metrics: {{server_log_event_counts: 1}}
'''

SEVERITIES = ['debug', 'info', 'notice', 'warning', 'error', 'log', 'fatal', 'panic']


class ReaperAs(Reaper):
    """pgreaper run as another user (root only)."""

    def __init__(self, user, *a, **kw):
        super().__init__(*a, **kw)
        self.user = user
        os.chmod(self.dir, 0o777)
        for f in os.listdir(self.dir):
            os.chmod(os.path.join(self.dir, f), 0o644)

    def argv(self):  # setpriv execs pgreaper itself: signals reach it directly
        pw = pwd.getpwnam(self.user)
        return ['setpriv', '--reuid=%d' % pw.pw_uid, '--regid=%d' % pw.pw_gid,
                '--clear-groups', '--'] + super().argv()


def sums(r):
    rows = [row for b in r.batches('server_log_event_counts', 'db1') for row in b['data']]
    return rows, {k: sum(x[k] for x in rows) for k in
                  SEVERITIES + [s + '_total' for s in SEVERITIES]}


def wait_counts(r, pred, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred(sums(r)[1]):
            return True
        time.sleep(0.3)
    return False


def make_events(pg):
    for i in range(3):
        pg.psql("do $$ begin raise warning 'rp warning %s'; end $$" % i)
    for _ in range(2):
        pg.psql('select 1/0', check=False)
    pg.psql("do $$ begin raise warning 'in the other database'; end $$", db='other')
    pg.psql('select 1/0', db='other', check=False)


def check(t, r, pg, label):
    t.ok(r.wait_batches('server_log_event_counts', 'db1', 1, timeout=30),
         '%s: a first row (the baseline)' % label, r.log()[-2000:])
    rows, before = sums(r)
    t.ok(set(rows[0]) == set(['epoch_ns'] + SEVERITIES + [s + '_total' for s in SEVERITIES]),
         "%s: pgwatch's columns" % label, rows[0])
    make_events(pg)
    t.ok(wait_counts(r, lambda s: s['warning'] - before['warning'] >= 3 and
                     s['error'] - before['error'] >= 2 and
                     s['warning_total'] - before['warning_total'] >= 4 and
                     s['error_total'] - before['error_total'] >= 3),
         '%s: warnings and errors counted, for the database and in total' % label, sums(r)[1])
    time.sleep(2)
    after = sums(r)[1]
    t.is_((after['warning'] - before['warning'], after['error'] - before['error']), (3, 2),
          '%s: each record counted once' % label)
    t.is_((after['warning_total'] - before['warning_total'],
           after['error_total'] - before['error_total']), (4, 3),
          '%s: the other database only in the totals' % label)
    t.ok('metric query failed' not in r.log(), '%s: nothing failed' % label, r.log()[-1500:])
    t.is_(r.stop(), 0, '%s: exit 0' % label)


def main():
    t = Tap()
    pg = Postgres('log_events', extra_conf={
        'logging_collector': 'on', 'log_destination': "'csvlog'", 'log_directory': "'log'",
        'log_min_messages': 'warning'})
    pg.psql('create database other')
    src = SOURCES.format(conn=pg.conn_str())
    check(t, Reaper(sys.argv[1], src, METRICS).start(), pg, 'local file')
    check(t, Reaper(sys.argv[1], src, METRICS, args=['--mode=per-metric']).start(), pg,
          'per-metric')
    if os.geteuid() == 0 and 'nobody' in [p.pw_name for p in pwd.getpwall()]:
        r = ReaperAs('nobody', sys.argv[1], src, METRICS).start()
        check(t, r, pg, 'through the server')
        t.ok(r.log().count('ERROR') == 0, 'through the server: no error logged', r.log())
    else:
        print('ok %d # SKIP pgreaper runs as root only here' % (t.n + 1))
        t.n += 1

    plain = Postgres('log_events_plain')
    r = Reaper(sys.argv[1], SOURCES.format(conn=plain.conn_str()), METRICS).start()
    t.ok(r.wait_log('metric=server_log_event_counts: metric skipped', 20) and
         'csvlog' in r.log(), 'without csvlog: unavailable, with the reason', r.log()[-1500:])
    time.sleep(2)
    t.is_(r.log().count('metric=server_log_event_counts'), 1, 'said once')
    t.is_(r.stop(), 0, 'exit 0')
    t.done()


if __name__ == '__main__':
    main()
