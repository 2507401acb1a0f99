"""Roles on a real streaming standby: the standby preset is used in recovery, metrics
marked for the other role never run, only_if_master collects nothing on a standby."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Postgres, Reaper, Tap  # noqa: E402

METRICS = '''
metrics:
  any_role:
    sqls:
      10: select pg_is_in_recovery() as in_recovery
  primary_only:
    sqls:
      10: select 1 as p
    node_status: primary
  standby_only:
    sqls:
      10: select status from pg_stat_wal_receiver
    node_status: standby
  primary_set_marker:
    sqls:
      10: select 1 as from_primary_set
presets:
  for_primary:
    metrics: {any_role: 1, primary_only: 1, standby_only: 1, primary_set_marker: 1}
  for_standby:
    metrics: {any_role: 1, primary_only: 1, standby_only: 1}
'''

SOURCES = '''
- name: primary
  conn_str: {primary}
  preset_metrics: for_primary
  preset_metrics_standby: for_standby
- name: replica
  conn_str: {standby}
  preset_metrics: for_primary
  preset_metrics_standby: for_standby
- name: replica_no_standby_config
  conn_str: {standby}
  preset_metrics: for_primary
- name: replica_master_only
  conn_str: {standby}
  custom_metrics: {{any_role: 1}}
  only_if_master: true
'''


def main():
    t = Tap()
    primary = Postgres('primary')
    standby = Postgres('standby', {'port': '5433'}, standby_of=primary)
    deadline = time.time() + 30
    while time.time() < deadline and standby.psql('select pg_is_in_recovery()') != 't':
        time.sleep(0.2)
    t.is_(standby.psql('select pg_is_in_recovery()'), 't', 'standby is in recovery')
    r = Reaper(sys.argv[1], SOURCES.format(primary=primary.conn_str(),
                                           standby=standby.conn_str()), METRICS).start()
    for db in ('primary', 'replica', 'replica_no_standby_config'):
        t.ok(r.wait_batches('any_role', db, 3), '%s collects' % db, r.log())
    t.ok(r.wait_log('source=replica_master_only: source is a standby and only_if_master is '
                    'set: not collecting', 10), 'only_if_master on a standby logged', r.log())
    time.sleep(1)
    t.is_(r.stop(), 0, 'exit 0')

    def n(metric, db):
        return len(r.batches(metric, db))

    t.ok(n('primary_only', 'primary') >= 3, 'primary runs its primary-only metric')
    t.is_(n('standby_only', 'primary'), 0, 'primary does not run the standby-only metric')
    t.ok(n('standby_only', 'replica') >= 3, 'standby runs its standby-only metric')
    t.is_(n('primary_only', 'replica'), 0, 'standby does not run the primary-only metric')
    t.is_(n('primary_set_marker', 'replica'), 0, 'standby uses preset_metrics_standby')
    t.is_(r.batches('standby_only', 'replica')[0]['data'][0]['status'], 'streaming',
          'the standby-only metric reads the WAL receiver')
    t.ok(n('primary_set_marker', 'replica_no_standby_config') >= 3,
         'without a standby config the primary set runs on a standby')
    t.is_(n('primary_only', 'replica_no_standby_config'), 0, '... minus primary-only metrics')
    t.is_(n('any_role', 'replica_master_only'), 0, 'only_if_master: nothing from a standby')
    t.is_(r.batches('any_role', 'replica')[0]['data'][0]['in_recovery'], True,
          'the replica rows come from a server in recovery')
    t.ok('connected to source (PostgreSQL 15' in r.log() and ', standby, ' in r.log(),
         'the role is logged on connect', r.log())
    t.done()


if __name__ == '__main__':
    main()
