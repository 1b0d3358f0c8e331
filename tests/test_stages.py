"""How `run.run` wires the stages: the MGP encoder reaches BFT (same run or `bft.init_from`),
finished stages are skipped, and an MGP killed mid-stage resumes to the uninterrupted result.
"""
import dataclasses
import time

import jax
import numpy as np
import pytest

from engine_helpers import tiny_config
from livt_jax.engine import checkpointing
from livt_jax.engine import run
from livt_jax.engine import sharding
from livt_jax.engine import train
from livt_jax import validate


def _config(**overrides):
  return tiny_config(**{'stages': 'mgp,bft', 'max_steps': 2, 'checkpoint_every_steps': 2,
                        **overrides})


@pytest.fixture
def initial_params(monkeypatch):
  """Records the parameters each stage's train state starts from, by stage name."""
  seen, real_build = {}, train.build_stage

  def build(config, name, *args, **kwargs):
    stage = real_build(config, name, *args, **kwargs)

    def init(rng, encoder):
      state = stage.init_state(rng, encoder)
      seen.setdefault(name, []).append(jax.device_get(state.params))
      return state
    return dataclasses.replace(stage, init_state=init)

  monkeypatch.setattr(train, 'build_stage', build)
  return seen


@pytest.fixture
def compiled(monkeypatch):
  """Counts train-step compilations by stage name (a skipped stage compiles nothing)."""
  counts, real = {}, train.compile_step

  def compile_step(stage, *args, **kwargs):
    counts[stage.name] = counts.get(stage.name, 0) + 1
    return real(stage, *args, **kwargs)

  monkeypatch.setattr(train, 'compile_step', compile_step)
  return counts


def _saved_params(config, stage_name, checkpoint_dir):
  mesh = sharding.make_mesh(config)
  stage = train.build_stage(config, stage_name, mesh, 14886, 1, 10)
  return jax.device_get(train.load_params(config, stage, str(checkpoint_dir)))


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_bft_starts_from_the_mgp_encoder_and_finished_stages_are_skipped(
    tmp_path, initial_params, compiled):
  workdir = tmp_path / 'run'
  run.run(_config(), str(workdir))
  mgp_encoder = _saved_params(_config(), 'mgp', workdir / 'mgp' / 'checkpoints')['encoder']
  mgp_start = initial_params['mgp'][0]['encoder']
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(mgp_start), jax.tree.leaves(mgp_encoder)))  # MGP trained
  bft_start = initial_params['bft'][0]
  _assert_trees_equal(bft_start['encoder'], mgp_encoder)  # the hand-off, at BFT step 0
  assert set(bft_start) - {'encoder'} == {'fc_norm', 'head'}  # new head, decoder dropped
  assert compiled == {'mgp': 1, 'bft': 1}

  # The same command again: both stages are finished, nothing is initialised or compiled.
  bft_final = _saved_params(_config(), 'bft', workdir / 'bft' / 'checkpoints')
  run.run(_config(), str(workdir))
  assert compiled == {'mgp': 1, 'bft': 1}
  assert len(initial_params['mgp']) == len(initial_params['bft']) == 1
  _assert_trees_equal(_saved_params(_config(), 'bft', workdir / 'bft' / 'checkpoints'),
                      bft_final)

  # Another workdir, BFT alone with bft.init_from: the same encoder at step 0.
  config = _config(stages='bft', **{'bft.init_from': str(workdir / 'mgp' / 'checkpoints')})
  validate.validate(config, jax.device_count())
  run.run(config, str(tmp_path / 'bft_only'))
  _assert_trees_equal(initial_params['bft'][1]['encoder'], mgp_encoder)
  _assert_trees_equal(_saved_params(config, 'bft', tmp_path / 'bft_only' / 'bft' / 'checkpoints'),
                      bft_final)


def test_init_from_errors(tmp_path):
  missing = _config(stages='bft', **{'bft.init_from': str(tmp_path / 'nope')})
  with pytest.raises(validate.ConfigError, match='bft.init_from.*no such checkpoint'):
    validate.validate(missing, jax.device_count())
  (tmp_path / 'empty').mkdir()
  empty = _config(stages='bft', **{'bft.init_from': str(tmp_path / 'empty')})
  with pytest.raises(FileNotFoundError, match='no checkpoint in'):
    run.run(empty, str(tmp_path / 'run'))


class _Killed(Exception):
  """Stands in for the process dying between two steps."""


def test_mgp_killed_mid_stage_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
  config = lambda: _config(stages='mgp', max_steps=5, **{'mgp.warmup_epochs': 0})
  run.run(config(), str(tmp_path / 'straight'))

  real_compile, calls = train.compile_step, []

  def compile_step_dying_at(die_at):
    def compile_step(*args, **kwargs):
      step = real_compile(*args, **kwargs)

      def counted(state, batch):
        calls.append(1)
        if len(calls) == die_at:  # steps 1-3 done, checkpoint at step 2
          raise _Killed()
        return step(state, batch)
      return counted
    return compile_step

  monkeypatch.setattr(train, 'compile_step', compile_step_dying_at(4))
  with pytest.raises(_Killed):
    run.run(config(), str(tmp_path / 'killed'))
  # The asynchronous save of step 2 finishes in the background (a real kill could lose it:
  # then the rerun would start from 0, which the step count below would show).
  ckpt_dir = tmp_path / 'killed' / 'mgp' / 'checkpoints'
  saved = lambda: sorted(p.name for p in ckpt_dir.iterdir() if p.name.isdigit())
  deadline = time.time() + 60
  while saved() != ['2'] and time.time() < deadline:
    time.sleep(0.2)
  assert saved() == ['2']
  calls.clear()
  monkeypatch.setattr(train, 'compile_step', compile_step_dying_at(-1))
  run.run(config(), str(tmp_path / 'killed'))
  assert len(calls) == 3  # steps 3, 4 and 5: it resumed, it did not start over

  straight = _saved_params(config(), 'mgp', tmp_path / 'straight' / 'mgp' / 'checkpoints')
  resumed = _saved_params(config(), 'mgp', tmp_path / 'killed' / 'mgp' / 'checkpoints')
  _assert_trees_equal(resumed, straight)
  start = jax.device_get(train.build_stage(
      config(), 'mgp', sharding.make_mesh(config()), 14886, 1, 10).init_state(
          jax.random.key(0), None).params)
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(start), jax.tree.leaves(resumed)))  # it did train


def test_checkpoint_every_minutes_saves_between_step_intervals(tmp_path, monkeypatch):
  real_global_batch = sharding.global_batch

  def slow(batch, mesh):  # a slow pod step: 0.3 s
    time.sleep(0.3)
    return real_global_batch(batch, mesh)

  monkeypatch.setattr(sharding, 'global_batch', slow)
  real_save = checkpointing.save
  save_times = {}

  def timed_save(mngr, step, *args, **kwargs):
    save_times[step] = time.monotonic()
    return real_save(mngr, step, *args, **kwargs)

  monkeypatch.setattr(checkpointing, 'save', timed_save)
  saved = {}
  for minutes in (0, 1 / 60):
    save_times.clear()
    config = _config(stages='mgp', max_steps=10, checkpoint_every_steps=1000, keep_checkpoints=50,
                     checkpoint_every_minutes=minutes)
    workdir = tmp_path / str(minutes)
    run.run(config, str(workdir))
    saved[minutes] = sorted(int(p.name) for p in (workdir / 'mgp' / 'checkpoints').iterdir()
                            if p.name.isdigit())
  assert saved[0] == [10]  # only the end of the stage
  # The clock starts with the stage (compilation included, so the first save may come at
  # step 1); saves between step intervals then come >= 1 s apart (orbax times the interval
  # from the previous save's start, so a slow save shortens the gap in steps, not in seconds).
  timed = saved[1 / 60][:-1]
  assert saved[1 / 60][-1] == 10 and len(timed) >= 2, saved
  gaps = [save_times[b] - save_times[a] for a, b in zip(timed, timed[1:])]
  assert all(gap >= 1.0 for gap in gaps), (saved, gaps)
