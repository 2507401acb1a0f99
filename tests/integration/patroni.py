"""Sources of kind patroni: a real three-member Patroni cluster on loopback (etcd 3.4 and
Patroni 3.0 from Debian, PostgreSQL 15), read from etcd as pgwatch reads it. Every member's
databases are monitored as <name>_<member>_<dbname>; an only_if_master source follows the
leader. A switchover and a failover (the leader stopped): within two refresh periods the
collection follows the new leader, the standby metrics move with the roles, nothing is
collected twice, and instance_up tells the story."""
import calendar
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Reaper, Tap, skip_all  # noqa: E402
from patroni import PatroniCluster  # noqa: E402

METRICS = '''
metrics:
  role:
    sqls:
      11: select pg_is_in_recovery()::int as in_recovery, current_setting('port')::int as port
  rec:
    sqls:
      11: select pg_is_in_recovery()::int as in_recovery
presets:
  p:
    metrics: {role: 1, instance_up: 1}
  ps:
    metrics: {rec: 1, instance_up: 1}
'''
REFRESH = 2


def sources(cluster):
    return '''
- name: all
  kind: patroni
  conn_str: %(url)s
  include_pattern: '^(postgres|app)$'
  preset_metrics: p
  preset_metrics_standby: ps
- name: lead
  kind: patroni
  conn_str: %(url)s
  only_if_master: true
  include_pattern: '^app$'
  preset_metrics: p
''' % {'url': cluster.dcs_url()}


def ts(line):
    """A jsonfile line's time (fetch time, ISO 8601 UTC) in seconds."""
    day, frac = line['time'].rstrip('Z').split('.')
    return calendar.timegm(time.strptime(day, '%Y-%m-%dT%H:%M:%S')) + float('0.' + frac)


def role_after(r, src, t):
    """(metric, in_recovery) of src's role and rec rows fetched after t (seconds): the
    primary set (role) or the standby set (rec)."""
    return sorted({(x['metric'], x['data'][0]['in_recovery']) for x in r.lines()
                   if x['dbname'] == src and x['metric'] in ('role', 'rec') and ts(x) >= t})


def roles_ok(r, c, leader, after):
    got = {m: role_after(r, 'all_%s_postgres' % m, after) for m in c.members}
    want = {m: [('role', 0)] if m == leader else [('rec', 1)] for m in c.members}
    return got == want, got


def wait_rows_after(r, src, after, timeout):
    """Whether src stores a role row fetched after `after` within timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(ts(b) >= after for b in r.batches('role', src)):
            return True
        time.sleep(0.2)
    return False


def lead_sources(r, after):
    """The lead_* sources that stored rows fetched after `after` (seconds)."""
    return sorted({b['dbname'] for b in r.batches('role')
                   if b['dbname'].startswith('lead_') and ts(b) >= after})


def leader_port(c, name):
    with open(c.members[name]['dir'] + '/patroni.yml') as f:
        return int(re.search(r'listen: 127.0.0.1:(\d+)\n  connect_address: 127.0.0.1:\d+\n  '
                             r'data_dir', f.read()).group(1))


def main():
    t = Tap()
    if os.environ.get('RP_VALGRIND'):
        skip_all('a Patroni cluster under valgrind is too slow to follow its own timing')
    c = PatroniCluster()
    t.ok(c.healthy(3), 'a three-member Patroni cluster is up', c.log())
    first = c.leader()
    subprocess.run(['psql', 'host=127.0.0.1 user=postgres dbname=postgres port=%d'
                    % leader_port(c, first), '-c', 'create database app'], check=True,
                   capture_output=True)
    r = Reaper(sys.argv[1], sources(c), METRICS, args=['--refresh', str(REFRESH)],
               env={'PGUSER': 'postgres'})
    r.start()
    names = ['all_%s_%s' % (m, db) for m in sorted(c.members) for db in ('app', 'postgres')]
    for n in names:
        r.wait_batches('instance_up', n, timeout=30)
    got = sorted({b['dbname'] for b in r.batches('instance_up') if b['dbname'].startswith('all_')})
    t.is_(got, names, 'every member\'s databases, named <name>_<member>_<dbname>')
    t.ok(r.wait_batches('role', 'lead_%s_app' % first, timeout=20), 'only_if_master: the leader',
         r.log())
    time.sleep(2)
    t.is_(lead_sources(r, 0), ['lead_%s_app' % first], 'and only the leader')
    time.sleep(3)
    ok, got = roles_ok(r, c, first, time.time() - 2)
    t.ok(ok, 'the leader runs the primary metrics, the standbys the standby preset', got)

    # Switchover to another member.
    target = sorted(m for m in c.members if m != first)[0]
    t_sw = time.time()
    c.api('/switchover', {'leader': first, 'candidate': target})
    ok = c.wait(lambda m: any(x['name'] == target and x['role'] == 'leader' for x in m), 60)
    t.ok(ok, 'Patroni switched over to %s' % target, c.log())
    t_done = time.time()
    t.ok(wait_rows_after(r, 'lead_%s_app' % target, t_sw, 2 * REFRESH + 15),
         'the only_if_master source follows the new leader', r.log())
    time.sleep(2 * REFRESH + 2)
    t.is_(lead_sources(r, time.time() - REFRESH), ['lead_%s_app' % target],
          'the old leader is no longer collected by it')
    c.healthy(3, 60)
    time.sleep(2 * REFRESH + 2)
    ok, got = roles_ok(r, c, target, time.time() - 2)
    t.ok(ok, 'within two refresh periods the metric sets moved with the roles', got)
    first_new = min(ts(b) for b in r.batches('role', 'lead_%s_app' % target))
    print('# switchover: Patroni done %.1f s after the request; the new leader collected by the '
          'only_if_master source %.1f s after it (--refresh %d)'
          % (t_done - t_sw, first_new - t_sw, REFRESH))

    # Failover: the leader is stopped.
    t_stop = time.time()
    c.stop(target)
    t_fo = time.time()
    ok = c.wait(lambda m: any(x['role'] == 'leader' and x['name'] != target for x in m), 90)
    t.ok(ok, 'Patroni failed over', c.log())
    new = c.leader()
    t_new = time.time()
    t.ok(wait_rows_after(r, 'lead_%s_app' % new, t_fo, 2 * REFRESH + 20),
         'the only_if_master source follows the leader after a failover', r.log())
    got = [ts(b) for b in r.batches('role', 'lead_%s_app' % new) if ts(b) >= t_fo]
    if got:
        print('# failover: Patroni elected %s %.1f s after the stop; collected %.1f s after the '
              'stop' % (new, t_new - t_fo, min(got) - t_fo))
    # Its server went away during the stop: the lost connection says 0 at once (and every
    # reconnect attempt again, for as long as etcd still lists the member).
    up = [b['data'][0]['is_up'] for b in r.batches('instance_up', 'all_%s_postgres' % target)
          if ts(b) >= t_stop]
    t.ok(0 in up, 'the stopped member: instance_up 0 when its server went away', up[-5:])
    time.sleep(2 * REFRESH + 2)
    t.is_(lead_sources(r, time.time() - REFRESH), ['lead_%s_app' % new],
          'one leader collected at a time')
    t.is_(r.stop(), 0, 'clean exit')
    c.cleanup()
    t.done()


main()
