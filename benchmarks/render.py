"""The docs' benchmark tables, made from the committed benchmark JSON files.

  python -m benchmarks.render            # rewrites the tables in the two files below
  python -m benchmarks.render --check    # exit 1 if they differ from what the JSON gives

Reads benchmarks/results/step/*.json (`python -m benchmarks.step --json`) and
benchmarks/results/loader/*.json (`python -m benchmarks.loaders --json`), and writes:
  docs/benchmarks.md               every ratio, labelled (same work or not), between the
                                   `<!-- generated: NAME -->` / `<!-- end: NAME -->` markers
  docs/benchmarks_readme_table.md  same-work ratios only, for the README
No number is typed by hand: every figure comes from a JSON file, which the table names.
"""
import argparse
import glob
import json
import os
import sys

from benchmarks import generated as markers

ROOT = os.path.join(os.path.dirname(__file__), '..')  # benchmarks/ sits at the repository root
RESULTS = os.path.join(ROOT, 'benchmarks', 'results')
DOCS = os.path.join(ROOT, 'docs', 'benchmarks.md')
README_TABLE = os.path.join(ROOT, 'docs', 'benchmarks_readme_table.md')
NONE_YET = '_No result committed yet under benchmarks/results/{}/._'


def load(folder: str) -> list[tuple[str, dict]]:
  """(file name, record) of every JSON file in `folder`, by name."""
  out = []
  for path in sorted(glob.glob(os.path.join(folder, '*.json'))):
    with open(path) as f:
      out.append((os.path.basename(path), json.load(f)))
  return out


def host_label(record: dict) -> str:
  h = record['host']
  flags = '+'.join(h.get('cpu_key_flags', [])) or 'no listed flags'
  return f"{h['cpu_model']} ({flags}), {h.get('usable_cpus')} CPUs"


def _load(record: dict) -> str:
  return (' / '.join(f'{x:.1f}' for x in record['load_before'][:1] + record['load_after'][:1]))


def _by_row(record: dict) -> dict:
  from benchmarks import report  # pylint: disable=g-import-not-at-top
  return {(r['stage'], report.row_name(r)): r for r in record['results']}


def step_table(records: list[tuple[str, dict]], same_work_only: bool = False) -> str:
  """One line per JAX/PyTorch ratio of every step record."""
  head = ('| stage | model | JAX | PyTorch | pairing | JAX img/s | PyTorch img/s | JAX / PyTorch '
          '| compile s (JAX / PyTorch) | host | load 1-min before / after | file |')
  lines = [head, '|' + '---|' * head.count(' | ') + '---|']
  for name, rec in records:
    m, rows = rec['meta'], _by_row(rec)
    model = f"ViT-{m['variant']} {m['image_size']}px b{m['batch']}"
    for x in rec['ratios']:
      if same_work_only and x['pairing'] != 'same work':
        continue
      jax_row, torch_row = rows[(x['stage'], 'jax')], rows[(x['stage'], x['torch'])]
      compile_s = '/'.join('-' if r['compile_s'] is None else f"{r['compile_s']:.1f}"
                           for r in (jax_row, torch_row))
      lines.append(
          f"| {x['stage']} | {model} | {x['jax_precision']} | {x['torch']} "
          f"{_describe(x['torch_precision'])} | {x['pairing']} | {jax_row['images_per_s']:.1f} | "
          f"{torch_row['images_per_s']:.1f} | {x['ratio']:.2f}x | {compile_s} | {host_label(rec)} | "
          f'{_load(rec)} | {name} |')
  return '\n'.join(lines) if len(lines) > 2 else NONE_YET.format('step')


def _describe(torch_precision: str) -> str:
  from benchmarks import pairing  # pylint: disable=g-import-not-at-top
  return f'({pairing.DESCRIBE[torch_precision]})'


def loader_table(records: list[tuple[str, dict]]) -> str:
  """One line per same-work pair of every loader record."""
  head = ('| stage | workers | ours (+ what it moved, timed in the step) | torch | ours img/s '
          '(img/CPU-s) | torch img/s (img/CPU-s) | wall ratio | per CPU-s ratio | host | file |')
  lines = [head, '|' + '---|' * head.count(' | ') + '---|']
  for name, rec in records:
    from benchmarks import loaders  # pylint: disable=g-import-not-at-top
    for r in rec['same_work']:
      per_cpu = '-' if r['ratio_per_cpu_s'] is None else f"{r['ratio_per_cpu_s']:.2f}x"
      lines.append(
          f"| {r['stage']} | {r['workers']} | {loaders.same_work_label(r)} | {r['torch']} | "
          f"{_rate(r['ours_images_per_s'], r['ours_images_per_cpu_s'])} | "
          f"{_rate(r['torch_images_per_s'], r['torch_images_per_cpu_s'])} | "
          f"{r['ratio_wall']:.2f}x | {per_cpu} | {host_label(rec)} | {name} |")
  return '\n'.join(lines) if len(lines) > 2 else NONE_YET.format('loader')


def _rate(rate, per_cpu) -> str:
  return f"{rate:.0f} ({'-' if per_cpu is None else format(per_cpu, '.0f')})"


def readme_table(steps, loaders_) -> str:
  """Same-work ratios only: the step's, and the loader's per CPU second."""
  lines = ['| what | JAX / PyTorch | file |', '|---|---|---|']
  for name, rec in steps:
    m = rec['meta']
    for x in rec['ratios']:
      if x['pairing'] == 'same work':
        lines.append(f"| train step {x['stage'].upper()}, ViT-{m['variant']} {m['image_size']}px, "
                     f"{x['jax_precision']} vs {x['torch']} {_describe(x['torch_precision'])} "
                     f"| {x['ratio']:.2f}x | {name} |")
  for name, rec in loaders_:
    from benchmarks import loaders  # pylint: disable=g-import-not-at-top
    for r in rec['same_work']:
      if r['ratio_per_cpu_s'] is not None:
        lines.append(f"| input pipeline {r['stage'].upper()}, {r['workers']} worker(s), "
                     f"{loaders.same_work_label(r)} vs {r['torch']}, per CPU second "
                     f"| {r['ratio_per_cpu_s']:.2f}x | {name} |")
  if len(lines) == 2:
    return NONE_YET.format('{step,loader}') + '\n'
  return ('<!-- generated by python -m benchmarks.render from benchmarks/results/: '
          'do not edit -->\n' + '\n'.join(lines) + '\n')


def tables(results: str = RESULTS) -> dict:
  steps = load(os.path.join(results, 'step'))
  loader_records = load(os.path.join(results, 'loader'))
  return {'step': step_table(steps), 'loader': loader_table(loader_records),
          'readme': readme_table(steps, loader_records)}


def fill(doc: str, tables_by_name: dict) -> str:
  """`doc` with the text between each `<!-- generated: NAME -->` and `<!-- end: NAME -->`
  replaced by tables_by_name[NAME]."""
  for name, text in tables_by_name.items():
    doc = markers.fill(doc, name, text)
  return doc


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--results', default=RESULTS)
  p.add_argument('--docs', default=DOCS)
  p.add_argument('--readme_table', default=README_TABLE)
  p.add_argument('--check', action='store_true', help='only compare; exit 1 if stale')
  args = p.parse_args(argv)
  generated = tables(args.results)
  with open(args.docs) as f:
    doc = f.read()
  try:
    new_doc = fill(doc, {k: generated[k] for k in ('step', 'loader')})
  except ValueError as e:
    print(f'{args.docs}: {e}', file=sys.stderr)
    return 2
  old_readme = open(args.readme_table).read() if os.path.exists(args.readme_table) else None
  stale = [path for path, old, new in ((args.docs, doc, new_doc),
                                       (args.readme_table, old_readme, generated['readme']))
           if old != new]
  if args.check:
    for path in stale:
      print(f'{path} differs from the tables the JSON under {args.results} gives: run '
            'python -m benchmarks.render', file=sys.stderr)
    return 1 if stale else 0
  with open(args.docs, 'w') as f:
    f.write(new_doc)
  with open(args.readme_table, 'w') as f:
    f.write(generated['readme'])
  for path in stale:
    print(f'rewrote {path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
