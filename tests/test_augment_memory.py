"""The device augmentation's memory: compiled alone for 224-px images, its temporaries per image
(XLA's `memory_analysis()`) stay within a bound, on CPU and for a TPU v5e chip (libtpu).

Why: channels-last RandAugment on a TPU padded its minor dimensions of 3-4 to 128 and needed
~220 MiB of temporaries per 224-px image (13.6 GiB per v5e chip for ImageNet-LT's 64 images),
unseen by every other test. The unit is one image as the ops hold it (int32, H x W x C); the
planar ops measured 19 units per image on a v5e chip and 17 on CPU (channels-last: 388 and 37).
"""
import json
import os
import subprocess
import sys

import jax

from engine_helpers import ROOT

SIZE, CHANNELS, NUM_OPS = 224, 3, 2
MAX_UNITS_PER_IMAGE = 24
UNIT = SIZE * SIZE * CHANNELS * 4

# Compiles the augmentation for `devices`, batch `per_device` images each; temp bytes per image
# per device. Shared by the CPU test and the TPU child process (libtpu stays out of this one).
_MEASURE = r'''
def temp_bytes_per_image(devices, per_device):
  import jax, jax.numpy as jnp
  from jax.sharding import Mesh, NamedSharding, PartitionSpec
  from livt_jax.data import device_augment
  sharding = NamedSharding(Mesh(devices, ('data',)), PartitionSpec('data'))
  n = per_device * len(devices)
  batch = {'image': jax.ShapeDtypeStruct((n, SIZE, SIZE, CHANNELS), jnp.uint8, sharding=sharding),
           'randaug': jax.ShapeDtypeStruct((n, NUM_OPS, 3), jnp.float32, sharding=sharding)}
  step = jax.jit(lambda b: device_augment.preprocess(b, (0.485, 0.456, 0.406),
                                                     (0.229, 0.224, 0.225))['image'])
  compiled = step.lower(batch).compile()
  return compiled.memory_analysis().temp_size_in_bytes / per_device
'''

_TPU_CHILD = r'''
import json, sys
sys.path.insert(0, ROOT)
from livt_jax import aot
aot.libtpu_location()
devices = aot.topology_devices(aot.parse_topology('v5e:2x2'))
print(json.dumps({'temp_per_image': temp_bytes_per_image(devices, 8),
                  'kind': devices[0].device_kind}))
'''

_CONSTANTS = f'SIZE, CHANNELS, NUM_OPS = {SIZE}, {CHANNELS}, {NUM_OPS}\n'
exec(_CONSTANTS + _MEASURE)  # pylint: disable=exec-used


def test_device_augmentation_memory_on_cpu():
  per_image = temp_bytes_per_image(jax.devices()[:1], 8)  # pylint: disable=undefined-variable
  assert 0 < per_image <= MAX_UNITS_PER_IMAGE * UNIT, per_image / UNIT


def test_device_augmentation_memory_on_a_tpu_chip():
  code = f'ROOT = {ROOT!r}\n' + _CONSTANTS + _MEASURE + _TPU_CHILD
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                        timeout=600, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  assert 'v5' in out['kind'].lower(), out
  assert 0 < out['temp_per_image'] <= MAX_UNITS_PER_IMAGE * UNIT, out['temp_per_image'] / UNIT

