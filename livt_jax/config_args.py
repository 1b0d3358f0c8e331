"""The argument of a config file: `--config=configs/NAME.py:key=value[,key=value]`.

ml_collections' config_flags passes the text after the first ':' to `get_config(arg)`; every
config file hands it to `parse` with the keys it understands, so an unknown key, a malformed
item or a bad value stops the run with one line (exit code 2 from livt_jax.main) instead of
being dropped.
"""
import os


class ConfigArgError(ValueError):
  """A config argument that is not understood; the message says what the file takes."""


def _describe(key, default) -> str:
  if isinstance(default, tuple):
    return f'{key}={"|".join(map(str, default))}'
  return f'{key}=<{type(default).__name__}, default {default:g}>' if isinstance(
      default, float) else f'{key}=<{type(default).__name__}, default {default}>'


def _convert(key, text, default):
  if isinstance(default, tuple):  # the allowed values, the first one the default
    for choice in default:
      if text == str(choice):
        return choice
    raise ValueError(f'{key}={text!r}: use one of {", ".join(map(str, default))}')
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(f'{key}={text!r} is not a {type(default).__name__}') from None


def parse(arg: str | None, config_file: str, **defaults) -> dict:
  """{key: value} of `arg` ('key=value,key2=value2') over `defaults`, for `config_file`.

  A default's type converts the text (int, float, str); a tuple default lists the values
  allowed, its first one the default. Empty or None: the defaults.

  Raises:
    ConfigArgError: an item without '=', an unknown or repeated key, or a bad value.
  """
  name = f'configs/{os.path.basename(config_file)}'
  out = {k: (v[0] if isinstance(v, tuple) else v) for k, v in defaults.items()}
  seen = set()
  for item in (arg or '').split(','):
    if not item.strip():
      continue
    key, sep, text = (s.strip() for s in item.partition('='))
    try:
      if not sep or not key:
        raise ValueError(f'{item!r} is not key=value')
      if key not in defaults:
        raise ValueError(f'unknown key {key!r}')
      if key in seen:
        raise ValueError(f'{key} is given twice')
      out[key] = _convert(key, text, defaults[key])
      seen.add(key)
    except ValueError as e:
      if not defaults:
        raise ConfigArgError(f'--config={name}:{arg}: {name} takes no argument; drop the '
                             f"':{arg}'") from None
      keys = ', '.join(_describe(k, v) for k, v in defaults.items())
      raise ConfigArgError(f'--config={name}:{arg}: {e}; {name} takes key=value[,key=value] '
                           f'with {keys}') from None
  return out
