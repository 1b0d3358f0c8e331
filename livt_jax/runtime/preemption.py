"""Stopping a stage cleanly on SIGTERM/SIGINT (VM preemption, `scancel`, Ctrl-C).

A signal only sets a flag; the training loop finishes the step it is in, saves the train state
with the data position at that step, and raises `Preempted`. `livt_jax.main` turns that into
one line and the exit code `EXIT_PREEMPTED`; rerunning the same command resumes from there.

Several processes must stop at the same step, or the collective save would hang. There JAX's
preemption sync point (`jax.distributed.initialize` starts it; its notifier catches SIGTERM and
the coordination service tells every process) gives the step at which all of them stop. SIGINT
is forwarded to it as SIGTERM. One process needs no agreement: the flag decides.
"""
import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

# EX_TEMPFAIL from sysexits.h: "temporary failure, the user is invited to retry".
EXIT_PREEMPTED = 75


class Preempted(Exception):
  """A stage stopped on a signal after saving its checkpoint; rerun to resume."""

  def __init__(self, stage: str, step: int, checkpoint_dir: str):
    super().__init__(
        f'{stage}: stopped by a signal at step {step}; checkpoint saved in {checkpoint_dir}. '
        'Rerun the same command to resume.')
    self.stage, self.step, self.checkpoint_dir = stage, step, checkpoint_dir


class StopOnSignal:
  """Context manager: while active, SIGTERM/SIGINT request a stop instead of killing."""

  def __init__(self):
    self._requested = threading.Event()
    self._previous = {}
    self._multi = jax.process_count() > 1

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self  # signal handlers can only be set from the main thread
    # Multi-process: JAX's notifier owns SIGTERM; SIGINT is handed over to it.
    sigs = (signal.SIGINT,) if self._multi else (signal.SIGTERM, signal.SIGINT)
    for sig in sigs:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()
    return False

  def _handle(self, signum, frame):
    del frame
    if self._multi:
      os.kill(os.getpid(), signal.SIGTERM)
    else:
      self._requested.set()
    del signum

  def request(self):
    """Requests a stop as a signal would (tests, and callers embedding the loop)."""
    self._requested.set()

  def should_stop(self, step: int) -> bool:
    """True at the step where this process (and every other one) must save and stop."""
    if self._multi:
      try:
        return multihost_utils.reached_preemption_sync_point(step)
      except RuntimeError:  # preemption service disabled: only a local request can stop
        return False
    return self._requested.is_set()
