"""docs/configuration.md is what docs/gen_config_reference.py writes, and lists every field of
get_base_config() with its default."""
import importlib.util
import os

import ml_collections

from livt_jax import config_defaults

ROOT = os.path.join(os.path.dirname(__file__), '..')


def _generator():
  spec = importlib.util.spec_from_file_location(
      'gen_config_reference', os.path.join(ROOT, 'docs', 'gen_config_reference.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _fields(config, prefix=''):
  for key in config.keys():
    if isinstance(config[key], ml_collections.ConfigDict):
      yield from _fields(config[key], f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', config[key]


def test_committed_page_equals_the_generator_output():
  with open(os.path.join(ROOT, 'docs', 'configuration.md')) as f:
    committed = f.read()
  assert committed == _generator().render(), (
      'docs/configuration.md is out of date: run python docs/gen_config_reference.py')


def test_every_field_has_a_row_with_its_default_and_a_meaning():
  rows = {}
  for line in _generator().render().splitlines():
    if line.startswith('| `'):
      cells = [c.strip() for c in line.strip('|').split(' | ')]
      rows[cells[0].strip('`')] = cells[1:]
  fields = dict(_fields(config_defaults.get_base_config()))
  assert set(rows) == set(fields)
  for name, value in fields.items():
    default, meaning = rows[name]
    assert default == (f'`{value!r}`' if value is not None else default), name
    assert value is not None or default.startswith('unset'), name
    assert meaning.strip(), name


def test_comments_are_taken_from_the_source():
  source = '''
def get_base_config():
  c = ml_collections.ConfigDict()
  # first line
  # second line
  c.a = 1  # inline
  c.b = 2

  c.d = ml_collections.ConfigDict()  # section
'''
  assert _generator().documented_assignments(source) == [
      ('a', 'first line second line inline'), ('b', ''), ('d', 'section')]
