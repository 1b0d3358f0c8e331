"""One side of `benchmarks.ab`: builds one stage's train step from the source tree on its
PYTHONPATH, then times rounds of steps when asked.

Protocol (lines on stdin/stdout): argv[1] is a JSON list of `benchmarks.step` arguments. After
compiling and warming up, the worker prints one `AB {...}` line (compile time, FLOPs, peak RSS);
then, for each `{"steps": n}` line it reads, it times n steps and prints `AB {...}` with the
wall and CPU seconds of each. EOF ends it. Other output (JAX's logs) goes to stderr or is
ignored by the parent, which reads only the `AB ` lines.
"""
import json
import sys

# This file is run as a script from the tool's own tree; the side's tree (PYTHONPATH) must win.
if sys.path and sys.path[0].endswith('benchmarks'):
  sys.path.pop(0)

PREFIX = 'AB '


def _send(obj) -> None:
  sys.stdout.write(PREFIX + json.dumps(obj) + '\n')
  sys.stdout.flush()


def main() -> None:
  from benchmarks import jax_runner  # pylint: disable=g-import-not-at-top
  from benchmarks import step
  from benchmarks import workload
  from livt_jax.engine import sharding

  args = step.parse_args(json.loads(sys.argv[1]))
  stage = args.stages.strip()
  if stage not in ('mgp', 'bft'):
    sys.exit(f'ab_worker times one stage, got --stages={args.stages!r}')
  mesh = sharding.make_mesh(workload.make_config(args))
  runner = jax_runner.build_jax_runner(stage, args, mesh)
  import livt_jax  # pylint: disable=g-import-not-at-top
  _send({'compile_s': runner.compile_s, 'flops': runner.flops, 'peak_rss': runner.peak_rss,
         'bytes_accessed': getattr(runner, 'bytes_accessed', None),
         'xla_temp': runner.xla_temp, 'impl': runner.impl, 'source_file': livt_jax.__file__})
  for line in sys.stdin:
    n = int(json.loads(line)['steps'])
    runner.timed_round(n)
    _send({'wall': runner.times[-n:], 'cpu': runner.cpu_times[-n:],
           'others': runner.others[-1] if runner.others else None, 'loss': runner.loss()})


if __name__ == '__main__':
  main()
