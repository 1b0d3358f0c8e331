"""`model.attention`: jax.nn.dot_product_attention ('xla' on this CPU; 'cudnn' is the same call
with cuDNN's kernel on a GPU) against the float64 NumPy ViT and against our attention."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from livt_jax.models import kernels
from test_vit import _images
from test_vit import _nano
from test_vit import _np_vit
from test_vit import random_params


def test_xla_attention_vit_matches_numpy_float64_and_our_gradients():
  x = _images((2, 8, 12, 3))  # 1 + 6 tokens: odd
  ours, xla = _nano('cls'), _nano('cls', attention='xla')
  params = random_params(ours, x)
  got = xla.apply({'params': params}, x, train=False)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  np.testing.assert_allclose(np.asarray(got), _np_vit(p64, np.asarray(x, np.float64), 4, 2, 'cls'),
                             rtol=1e-4, atol=1e-5)
  w = np.random.default_rng(2).normal(size=(2, 5))
  grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply({'params': p}, x, train=False) * w))(params)
           for m in (ours, xla)]
  for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)


def test_the_padding_cudnn_needs_changes_no_number():
  """An odd sequence is padded by one key no query sees: outputs and gradients unchanged."""
  rng = np.random.default_rng(0)
  q, k, v = (jnp.asarray(rng.normal(size=(2, 7, 3, 8)), jnp.float32) for _ in range(3))
  plain = lambda *a: kernels.library_attention(*a, 'xla', even=False)
  padded = lambda *a: kernels.library_attention(*a, 'xla', even=True)
  np.testing.assert_allclose(padded(q, k, v), plain(q, k, v), rtol=1e-5, atol=1e-6)
  assert padded(q, k, v).shape == (2, 7, 3, 8)
  w = jnp.asarray(rng.normal(size=(2, 7, 3, 8)), jnp.float32)
  g = [jax.grad(lambda *a, f=f: jnp.sum(f(*a) * w), argnums=(0, 1, 2))(q, k, v)
       for f in (plain, padded)]
  for a, b in zip(g[0], g[1]):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_an_unknown_attention_is_a_clear_error():
  x = _images((1, 8, 8, 3))
  with pytest.raises(ValueError, match="model.attention='flash' is not known"):
    jax.eval_shape(lambda: _nano('cls', attention='flash').init(
        {'params': jax.random.key(0)}, x, train=False))


def test_split_heads_layout_and_its_gradient_are_exact():
  """q, k, v as NumPy lays them out; the gradient (a concatenation) puts each back in place."""
  from livt_jax.models import vit  # pylint: disable=g-import-not-at-top
  b, t, heads, hd = 2, 5, 3, 4
  qkv = np.random.default_rng(3).normal(size=(b, t, 3 * heads * hd)).astype(np.float32)
  want = qkv.astype(np.float64).reshape(b, t, 3, heads, hd).transpose(2, 0, 3, 1, 4)
  got = vit.split_heads(jnp.asarray(qkv), heads)
  for i in range(3):
    np.testing.assert_array_equal(np.asarray(got[i]), want[i].astype(np.float32))
  w = [np.random.default_rng(4 + i).normal(size=want[i].shape) for i in range(3)]
  grad = jax.grad(lambda a: sum(jnp.sum(x * wi) for x, wi in zip(vit.split_heads(a, heads), w)))(
      jnp.asarray(qkv))
  grad_want = np.stack(w).transpose(1, 3, 0, 2, 4).reshape(b, t, -1)  # the inverse layout
  np.testing.assert_allclose(np.asarray(grad), grad_want, rtol=1e-6, atol=1e-6)
