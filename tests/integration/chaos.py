"""A short chaos run (see tests/lib/chaos.py): in CI under the ASan setup only, where it
also checks for leaks and memory errors; bench/chaos.py runs it for 30 minutes."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'lib'))
from pgharness import Tap, skip_all  # noqa: E402

if os.environ.get('RP_VALGRIND') or not os.environ.get('RP_SANITIZED'):
    skip_all('the chaos run belongs to the ASan setup (bench/chaos.py runs it longer)')

from chaos import Chaos  # noqa: E402


def main():
    t = Tap()
    duration = float(os.environ.get('RP_CHAOS_SECONDS', '120'))
    c = Chaos(sys.argv[1], duration, seed=int(os.environ.get('RP_CHAOS_SEED', '3')))
    rep = c.run()
    print('# ' + json.dumps({k: v for k, v in rep.items() if k != 'log_tail'}))
    t.is_(rep['crashed_before_stop'], None, 'pgreaper ran to the end')
    t.is_(rep['rc'], 0, 'exit 0 on SIGTERM')
    t.ok(not rep['sanitizer'], 'no sanitizer report', rep['log_tail'])
    t.ok(sum(rep['actions'].values()) >= duration / 2,
         '%d faults and requests injected' % sum(rep['actions'].values()), rep['actions'])
    t.ok(rep['fds_late_max'] <= rep['fds_warm_max'] + 4,
         'file descriptors flat after warm-up (%d, then %d)'
         % (rep['fds_warm_max'], rep['fds_late_max']))
    t.ok(rep['rss_late_kb'] <= rep['rss_warm_kb'] * 1.5 + 32768,
         'RSS flat after warm-up (%d KiB, then %d KiB)' % (rep['rss_warm_kb'], rep['rss_late_kb']))
    rec = rep['reconcile']
    s = rep['summary']
    t.ok(rec['rows_json'] > 1000, 'rows collected: %d' % rec['rows_json'])
    t.is_(rec['lost'], 0, 'no row lost between the two sinks')
    t.is_(rec['duplicated'], 0, 'no row written twice')
    t.is_(rec['extra'], 0, 'no row in the sink that was not collected')
    t.is_(s.get('sink_rows_written'), rec['rows_json'] + rec['rows_sink'],
          'rows written as reported = rows held by both sinks')
    t.is_(s.get('sink_rows_dropped'), 0, 'nothing dropped')
    t.is_(s.get('sink_rows_unknown'), 0, 'no outcome unknown')
    t.done()


if __name__ == '__main__':
    main()
