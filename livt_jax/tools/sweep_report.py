"""The aggregate of a sweep: mean +- std over seeds per grid point, as Markdown, JSON and a plot."""
import io
import json
import os

from etils import epath
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

METRICS = ('top1', 'many', 'medium', 'few', 'ece')
HEADERS = ('top-1', 'Many', 'Medium', 'Few', 'ECE')


def _stats(values):
  """(mean, sample std or None for one seed) in percent."""
  x = 100 * np.asarray(values, np.float64)
  return float(x.mean()), (float(x.std(ddof=1)) if len(x) > 1 else None)


def _cell(stat):
  if stat is None:
    return '-'
  mean, std = stat
  return f'{mean:.1f}' if std is None else f'{mean:.1f} ± {std:.1f}'


def aggregate(axes, finetune, failed=()) -> list[dict]:
  """One row per grid point: seeds done, and mean/std of each metric (final and best-on-val)."""
  rows = []
  points = []
  for run in finetune:
    if run['point'] not in points:
      points.append(run['point'])
  for point in points:
    runs = [r for r in finetune if r['point'] == point]
    reports = []
    for r in runs:
      path = os.path.join(r['workdir'], 'report', 'report.json')
      if os.path.exists(path):
        with open(path) as f:
          reports.append(json.load(f))
    row = {'point': point, 'seeds': len(reports), 'planned': len(runs),
           'failed': [r['workdir'] for r in runs if r['workdir'] in failed]}
    vals = [v for v in (_val_top1(rep.get('evals', {}).get('val', {})) for rep in reports)
            if v is not None]
    row['val_top1'] = _stats(vals) if vals and len(vals) == len(reports) else None
    for m in METRICS:
      finals = [rep[m] for rep in reports if rep.get(m) is not None]
      bests = [rep['best_on_val'][m] for rep in reports
               if rep.get('best_on_val') and rep['best_on_val'].get(m) is not None]
      row[m] = _stats(finals) if finals else None
      row['best_' + m] = _stats(bests) if len(bests) == len(reports) and bests else None
    row['selected_on'] = sorted({_selected_on(rep['best_on_val']) for rep in reports
                                 if rep.get('best_on_val')})
    rows.append(row)
  return rows


# What reports written before best_on_val.selected_on was recorded chose on.
_SELECTED_BEFORE = 'val top1'


def _selected_on(best: dict) -> str:
  """What the best-on-val checkpoint was chosen on ('val top1', 'val balanced_top1', ...)."""
  return best.get('selected_on', _SELECTED_BEFORE)


def _val_top1(val: dict):
  """The class-balanced top-1 on val (top1 itself on a class-balanced val; a larger val from
  dataset.val_max_per_class is not), or top1 from reports written before it was recorded."""
  return val.get('balanced_top1', val.get('top1'))


def markdown(axes, rows) -> str:
  keys = [k for k, _ in axes] or ['run']
  best = [f'best-on-val {h}' for h in ('top-1', 'Few', 'ECE')]
  lines = ['| ' + ' | '.join([*keys, 'seeds', 'val top-1', *HEADERS, *best]) + ' |',
           '|' + '---|' * (len(keys) + 2 + len(HEADERS) + len(best))]
  for row in rows:
    point = [str(row['point'].get(k, 'base')) for k in keys]
    seeds = f'{row["seeds"]}/{row["planned"]}'
    lines.append('| ' + ' | '.join([*point, seeds, _cell(row.get('val_top1')),
                                    *[_cell(row[m]) for m in METRICS],
                                    *[_cell(row['best_' + m]) for m in ('top1', 'few', 'ece')]])
                 + ' |')
  lines.append('')
  selected = sorted({s for row in rows for s in row.get('selected_on', [])}) or [_SELECTED_BEFORE]
  lines.append('Mean ± sample std over seeds (%). val top-1: the final model on the validation '
               'split, class-balanced (compare runs on this); the other columns: test split. '
               f'best-on-val = the checkpoint with the best {" / ".join(selected)} '
               '(never chosen on test).')
  failed = [w for row in rows for w in row['failed']]
  if failed:
    lines.append(f'Failed runs (left out): {", ".join(failed)}')
  return '\n'.join(lines) + '\n'


def plot(axes, rows, path) -> bool:
  """top-1 and Many/Medium/Few against the values of a one-axis sweep (the paper's Fig. 3)."""
  if len(axes) != 1 or not any(r['top1'] for r in rows):
    return False
  key, values = axes[0]
  try:
    xs = [float(v) for v in values]
    ticks = None
  except ValueError:
    xs, ticks = list(range(len(values))), values
  fig, ax = plt.subplots(figsize=(5.5, 4))
  for metric, label, style in (('top1', 'top-1', 'k-o'), ('best_top1', 'top-1 best-on-val', 'k--s'),
                               ('many', 'Many', 'b-^'), ('medium', 'Medium', 'g-^'),
                               ('few', 'Few', 'r-^')):
    got = [(x, r[metric]) for x, r in zip(xs, rows) if r[metric]]
    if got:
      # Categorical values (e.g. losses) get markers only: a line would suggest an order.
      ax.errorbar([x for x, _ in got], [s[0] for _, s in got],
                  yerr=[s[1] or 0 for _, s in got], fmt=style.replace('-', '') if ticks else style,
                  capsize=3, label=label)
  if ticks:
    ax.set_xticks(xs, ticks)
  ax.set(xlabel=key, ylabel='test accuracy (%)', title=f'sweep over {key}')
  ax.legend(fontsize=7)
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=100)
  plt.close(fig)
  epath.Path(path).write_bytes(buffer.getvalue())
  return True


def write(root, axes, finetune, failed=()) -> str:
  """Writes sweep.md, sweep.json and (one axis) sweep.png into `root`; returns the Markdown."""
  rows = aggregate(axes, finetune, failed)
  md = markdown(axes, rows)
  root = epath.Path(root)
  root.mkdir(parents=True, exist_ok=True)
  (root / 'sweep.md').write_text(md)
  (root / 'sweep.json').write_text(json.dumps(rows, indent=1))
  plot(axes, rows, root / 'sweep.png')
  return md
