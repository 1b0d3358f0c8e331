"""Runs many `python -m livt_jax.main ... --dry_run` command lines in one process.

  python tests/docs_commands_runner.py IN.json OUT.json

IN.json is a list of argument lists (what follows `python -m livt_jax.main`); OUT.json gets, per
command, its exit code and what it printed. Each command goes through livt_jax.main's own flag
parsing and `_main`, as the command line does; only the process start-up is shared (the imports
take ~3 s of CPU per process, the dry run itself milliseconds). The flags are reset between
commands. Used by tests/test_docs_commands.py.
"""
import contextlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from livt_jax import main as cli  # pylint: disable=g-import-not-at-top


def run_one(args: list[str]) -> dict:
  out, err = io.StringIO(), io.StringIO()
  code = None
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      cli.FLAGS.unparse_flags()
      # config_flags registers one `config.*` flag per field when it parses --config; they
      # are dropped, so the next command's config registers its own.
      for name in [n for n in cli.FLAGS if n.startswith('config.')]:
        delattr(cli.FLAGS, name)
      # config_flags reads the override list from sys.argv itself (_ConfigFlag._GetArgv).
      sys.argv = ['livt_jax.main', *args]
      argv = cli._parse_flags(sys.argv)  # pylint: disable=protected-access
      code = cli._main(argv)  # pylint: disable=protected-access
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # pylint: disable=broad-except
      print(f'{type(e).__name__}: {e}', file=err)
      code = 1
  return {'args': args, 'code': code, 'stdout': out.getvalue(), 'stderr': err.getvalue()}


def main(argv):
  with open(argv[1]) as f:
    commands = json.load(f)
  cli.flags.mark_flag_as_required('config')
  results = [run_one(args) for args in commands]
  with open(argv[2], 'w') as f:
    json.dump(results, f)


if __name__ == '__main__':
  main(sys.argv)
