"""A random-kill soak: one tiny MGP -> BFT run killed N times at random points and resumed.

    python tools/soak.py --kills 20 --seed 0            # workdir on the local disk
    python tools/soak.py --kills 20 --seed 0 --gcs      # workdir in a bucket of fake-gcs-server

The run is the Fashion-MNIST-LT config shrunk to a ViT-nano (the tiny run of tests/test_faults.py)
with both stages, a save every few steps and the best-on-val checkpoint. First it runs once
uninterrupted; then the same command in another workdir is killed N times and rerun after each
kill. A kill is SIGTERM or kill -9 (mixed by the seed), sent at a random step, at a random time
after the start (also during start-up and restore), or while a save is being written (seen as a
new orbax tmp folder, or in the bucket as a step folder without its commit marker). At the end
the full train state of both stages and the best-on-val parameters must equal the
uninterrupted run's bit for bit, and every checkpoint step kept in either workdir must restore.

Where the kills fall depends on timing, so two soaks with one seed may differ; the seed fixes
the sequence of kinds and targets. Exit status 0: all checks held; 1: one failed (the line
says which).
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
BUCKET = 'livt-soak'
EXIT_PREEMPTED = 75  # livt_jax.runtime.preemption.EXIT_PREEMPTED (not imported: jax would start here)
DEVICES = 2
CHECKPOINT_EVERY = 3
# The tiny run (tests/test_faults.py's TINY, both stages); max_steps is set from --kills.
OVERRIDES = {
    'stages': 'mgp,bft', 'model.variant': 'nano', 'model.decoder_depth': 1,
    'model.decoder_width': 32, 'model.decoder_heads': 2, 'mgp.batch_size': 32,
    'bft.batch_size': 32, 'log_every_steps': 1, 'checkpoint_every_steps': CHECKPOINT_EVERY,
    'checkpoint_every_minutes': 0.0}
KINDS = ('step', 'save', 'time')  # when a kill falls (see the module doc)
PROGRESS = re.compile(r'livt_jax: (mgp|bft) +(\d+)/(\d+)')


def _say(text):
  print(f'soak: {text}', flush=True)


class Fail(Exception):
  """A check of the soak failed."""


class Attempt:
  """One `python -m livt_jax.main` process; a thread reads its output and tracks the step."""

  def __init__(self, workdir, max_steps, env):
    flags = [f'--config.{k}={v}' for k, v in {**OVERRIDES, 'max_steps': max_steps}.items()]
    self.proc = subprocess.Popen(
        [sys.executable, '-m', 'livt_jax.main', '--config=configs/fashion_mnist_lt.py',
         f'--workdir={workdir}', *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    self.started = time.time()
    self.max_steps = max_steps
    self.lines = []
    self.step = None  # the last global step printed (BFT's steps count after MGP's)
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.append(line)
      m = PROGRESS.search(line)
      if m:
        self.step = int(m.group(2)) + (self.max_steps if m.group(1) == 'bft' else 0)

  def running(self) -> bool:
    return self.proc.poll() is None

  def finish(self, timeout=600) -> int:
    code = self.proc.wait(timeout=timeout)
    self._reader.join(timeout=30)
    return code

  def output(self) -> str:
    return ''.join(self.lines)


class LocalDir:
  """The checkpoint folders of a local workdir."""

  def __init__(self, workdir):
    self.workdir = workdir

  def in_flight(self) -> set[str]:
    """Saves being written: orbax writes STEP.orbax-checkpoint-tmp-* and renames it when done."""
    out = set()
    for sub in ('mgp/checkpoints', 'bft/checkpoints', 'bft/best'):
      folder = os.path.join(self.workdir, sub)
      names = os.listdir(folder) if os.path.isdir(folder) else []
      out |= {f'{sub}/{n}' for n in names if 'tmp' in n}
    return out


class BucketDir:
  """The checkpoint folders of a workdir in the emulator's bucket, read over its JSON API."""

  def __init__(self, emulator, prefix):
    self.emulator, self.prefix = emulator, prefix

  def in_flight(self) -> set[str]:
    """Saves being written: a step folder without orbax's commit_success.txt (a bucket has no
    atomic rename, so orbax writes in place and commits with that file). Each is named with
    its object count, so a folder left over by an earlier kill shows up as new only while
    it is being written again."""
    steps = {}
    for name in self.emulator.names(BUCKET, self.prefix):
      m = re.match(re.escape(self.prefix) + r'((?:mgp|bft)/(?:checkpoints|best)/\d+)/(.*)', name)
      if m:
        steps.setdefault(m.group(1), set()).add(m.group(2))
    return {f'{k} ({len(v)} objects)' for k, v in steps.items()
            if 'commit_success.txt' not in v}


def _kill(attempt, rng, kind, target, watch, deadline):
  """Waits for the kill point of `kind`; returns (signal, what) or None if the run ended.

  'step': once the run has printed step `target` (or a later one); 'save': during the first
  save that starts once the run is within a save interval of `target`; 'time': a random time
  after the start.
  """
  sig = signal.SIGTERM if rng.random() < 0.5 else signal.SIGKILL
  delay = float(rng.uniform(0, 30)) if kind == 'time' else 0.0
  before = None
  while attempt.running():
    if kind == 'save' and before is None and (attempt.step or 0) >= target - CHECKPOINT_EVERY:
      before = watch.in_flight()  # saves already under way before this point do not count
    if time.time() > deadline:
      raise Fail(f'no {kind} kill point within the time limit:\n{attempt.output()[-3000:]}')
    what = None
    if kind == 'step' and attempt.step is not None and attempt.step >= target:
      what = f'at step {attempt.step}'
    elif kind == 'time' and time.time() - attempt.started >= delay:
      what = f'{delay:.1f} s after the start (step {attempt.step})'
    elif kind == 'save' and before is not None:
      new = watch.in_flight() - before
      if new:
        what = f'during the save {sorted(new)[0]} (step {attempt.step})'
    if what is not None:
      attempt.proc.send_signal(sig)
      return sig, what
    time.sleep(0.01 if kind == 'save' else 0.05)
  return None


def _soak(args, env, workdirs, watch) -> dict:
  rng = np.random.default_rng(args.seed)
  max_steps = args.max_steps or max(12, 3 * args.kills)
  total = 2 * max_steps
  started = time.time()
  _say(f'uninterrupted run: {max_steps} MGP + {max_steps} BFT steps, a save every '
       f'{CHECKPOINT_EVERY} steps, in {workdirs["straight"]}')
  straight = Attempt(workdirs['straight'], max_steps, env)
  if straight.finish() != 0:
    raise Fail(f'the uninterrupted run failed:\n{straight.output()[-4000:]}')
  _say(f'uninterrupted run done in {time.time() - started:.0f} s')

  # The steps at or after which the kills fall, spread over both stages (MGP's steps, then
  # BFT's); a kill at a random time ignores its target.
  targets = np.sort(rng.choice(np.arange(1, total), size=args.kills, replace=args.kills >= total))
  kills = []
  while True:
    attempt = Attempt(workdirs['killed'], max_steps, env)
    if len(kills) == args.kills:
      code = attempt.finish()
      if code != 0:
        raise Fail(f'the last resume exited with {code}:\n{attempt.output()[-4000:]}')
      break
    kind = KINDS[rng.choice(len(KINDS), p=(0.45, 0.4, 0.15))]
    hit = _kill(attempt, rng, kind, targets[len(kills)], watch, time.time() + 600)
    code = attempt.finish()
    resumed = re.findall(r'(mgp|bft): resuming from step (\d+)', attempt.output())
    if hit is None:  # the run ended before the kill point
      if code != 0:
        raise Fail(f'a run exited with {code} before its kill:\n{attempt.output()[-4000:]}')
      _say(f'the run finished before kill {len(kills) + 1} ({kind}); {len(kills)} kills')
      break
    sig, what = hit
    expected = ((EXIT_PREEMPTED, -signal.SIGTERM, 0) if sig == signal.SIGTERM
                else (-signal.SIGKILL, 0))
    if code not in expected:
      raise Fail(f'{sig.name} {what}: exit {code}, expected one of {expected}:\n'
                 f'{attempt.output()[-4000:]}')
    stage = ('before its first step' if attempt.step is None else
             'in MGP' if attempt.step <= max_steps else 'in BFT')
    kills.append({'signal': sig.name, 'kind': kind, 'what': what, 'exit': code,
                  'step': attempt.step, 'stage': stage})
    _say(f'kill {len(kills)}/{args.kills}: {sig.name} {what}; exit {code}'
         + (f'; this run resumed from {resumed[-1][0]} step {resumed[-1][1]}' if resumed else '')
         + f' ({time.time() - started:.0f} s)')
    if code == 0:
      _say('the run had finished when the signal came; no more kills possible')
      break
  return {'kills': kills, 'max_steps': max_steps, 'seconds': time.time() - started}


def _state_leaves(tree) -> list[np.ndarray]:
  import jax  # pylint: disable=g-import-not-at-top
  return [np.asarray(x) for x in jax.tree.leaves(jax.device_get(tree))]


def _check(workdirs, max_steps, watch) -> list[str]:
  """Compares both workdirs bit for bit and restores every kept step; returns the findings."""
  import jax  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import checkpointing  # pylint: disable=g-import-not-at-top
  from livt_jax.evals import evaluators  # pylint: disable=g-import-not-at-top
  from livt_jax.runtime import paths  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import sharding  # pylint: disable=g-import-not-at-top
  from livt_jax.engine import train  # pylint: disable=g-import-not-at-top
  from livt_jax.data import registry  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(
      'fm', os.path.join(ROOT, 'configs', 'fashion_mnist_lt.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for k, v in {**OVERRIDES, 'max_steps': max_steps}.items():
    node = config
    *parents, leaf = k.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = v
  info = registry.get_info(config.dataset.name)
  num_train = registry.lt_train_size(info, config.dataset.imbalance, config.dataset.val_per_class)
  mesh = sharding.make_mesh(config, jax.devices()[:1])
  left = sorted(watch.in_flight())
  findings = [f'incomplete saves left in the killed workdir: {left or "none"}']
  for name in ('mgp', 'bft'):
    stage = train.build_stage(config, name, mesh, num_train, info.num_channels, info.num_classes)
    last = {}
    for run, workdir in workdirs.items():
      mngr = checkpointing.manager(paths.join(workdir, name, 'checkpoints'), config)
      steps = sorted(mngr.all_steps())
      for step in steps:  # every kept step restores
        last[run] = (step, checkpointing.restore(mngr, stage.abstract_state, step=step))
      mngr.close()
      findings.append(f'{run} {name}: steps {steps} restore')
    (step_a, a), (step_b, b) = last['straight'], last['killed']
    if step_a != step_b or step_a != max_steps:
      raise Fail(f'{name}: last steps {step_a} (uninterrupted) and {step_b} (killed), '
                 f'expected {max_steps}')
    _assert_identical(f'{name} train state at step {step_a}', a, b)
    findings.append(f'{name}: the train state at step {step_a} (parameters, optimizer state, '
                    'step) is bit-identical')
    if name == 'bft':
      metric = evaluators.selection(config)[1]
      abstract = stage.abstract_state.params  # as run.py restores it
      best = {run: evaluators.restore_best(paths.join(workdir, *evaluators.BEST_DIR), metric,
                                           abstract) for run, workdir in workdirs.items()}
      if best['straight'] is None or best['killed'] is None:
        raise Fail(f'a best-on-val checkpoint is missing: {best}')
      if best['straight'][1] != best['killed'][1]:
        raise Fail(f'best-on-val steps differ: {best["straight"][1]} / {best["killed"][1]}')
      _assert_identical('best-on-val parameters', best['straight'][0], best['killed'][0])
      findings.append(f'bft best-on-val (step {best["killed"][1]}, '
                      f'{metric} {best["killed"][2][metric]:.4f}): bit-identical')
  return findings


def _assert_identical(what, a, b):
  xs, ys = _state_leaves(a), _state_leaves(b)
  if len(xs) != len(ys):
    raise Fail(f'{what}: {len(xs)} and {len(ys)} arrays')
  for i, (x, y) in enumerate(zip(xs, ys)):
    if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
      diff = (float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64))))
              if x.shape == y.shape else 'shape')
      raise Fail(f'{what}: array {i} differs ({x.dtype}{x.shape} vs {y.dtype}{y.shape}, '
                 f'max difference {diff})')


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--kills', type=int, default=10, help='how many times to kill the run')
  parser.add_argument('--seed', type=int, default=0, help='seeds the kinds and kill points')
  parser.add_argument('--gcs', action='store_true',
                      help='the workdirs in a bucket of fake-gcs-server (tests/gcs_emulator.py)')
  parser.add_argument('--max_steps', type=int, default=0,
                      help='steps per stage (default: max(12, 3 x kills))')
  parser.add_argument('--keep', action='store_true', help='keep the local workdirs')
  args = parser.parse_args(argv)
  if args.kills < 0 or args.max_steps < 0:
    print('soak: error: --kills and --max_steps must be >= 0', file=sys.stderr)
    return 2
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # TensorFlow's C++ INFO lines (as main.py)
  os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')  # and its oneDNN notice
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={DEVICES}',
             JAX_PLATFORMS='cpu')
  local = tempfile.mkdtemp(prefix='livt_soak_')
  emulator = None
  try:
    if args.gcs:
      sys.path.insert(0, os.path.join(ROOT, 'tests'))
      import gcs_emulator  # pylint: disable=g-import-not-at-top
      emulator = gcs_emulator.Emulator(local)
      emulator.make_bucket(BUCKET)
      env = emulator.env(env)
      os.environ.update(emulator.env({}))  # this process restores from the bucket too
      workdirs = {r: f'gs://{BUCKET}/{r}' for r in ('straight', 'killed')}
      watch = BucketDir(emulator, 'killed/')
    else:
      workdirs = {r: os.path.join(local, r) for r in ('straight', 'killed')}
      watch = LocalDir(workdirs['killed'])
    os.environ.update({k: env[k] for k in ('XLA_FLAGS', 'JAX_PLATFORMS')})
    sys.path.insert(0, ROOT)
    result = _soak(args, env, workdirs, watch)
    findings = _check(workdirs, result['max_steps'], watch)
  except Fail as e:
    _say(f'FAILED: {e}')
    return 1
  finally:
    if emulator is not None:
      emulator.stop()
    if args.keep:
      _say(f'workdirs kept in {local}')
    else:
      shutil.rmtree(local, ignore_errors=True)
  for line in findings:
    _say(line)
  kills = result['kills']
  count = lambda **kv: sum(all(k[a] == b for a, b in kv.items()) for k in kills)
  _say(f'PASSED: {len(kills)} kills ({count(signal="SIGTERM")} SIGTERM, '
       f'{count(signal="SIGKILL")} kill -9; {count(kind="step")} at a step, '
       f'{count(kind="save")} during a save, {count(kind="time")} at a random time; '
       f'{count(stage="in MGP")} in MGP, {count(stage="in BFT")} in BFT, '
       f'{count(stage="before its first step")} before a run\'s first step), '
       f'{"gs:// (emulator)" if args.gcs else "local"} workdir, {len(kills) + 2} processes, '
       f'{result["seconds"]:.0f} s; final state bit-identical, every kept checkpoint restored')
  return 0


if __name__ == '__main__':
  sys.exit(main())
