"""Writes the evaluation report: JSON, a Markdown table, and two PNG plots."""
import io
import json

from etils import epath
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def _pct(x):
  return '-' if x is None else f'{100 * x:.1f}'


def _row(label: str, r: dict) -> str:
  return (f'| {label} | {_pct(r["top1"])} | {_pct(r["many"])} | {_pct(r["medium"])} | '
          f'{_pct(r["few"])} | {_pct(r["ece"])} | {_pct(r["mce"])} |')


def markdown(result: dict, title: str) -> str:
  """The report table: the final model, and the best-on-validation one when there is one."""
  conv = result['convention']
  sizes = result['group_sizes']
  rows = [_row(result['model_choice'], result)]
  best = result.get('best_on_val')
  if best:
    rows.append(_row(best['model_choice'], best))
  lines = [
      f'## {title}', '',
      '| model | top-1 | Many | Medium | Few | ECE | MCE |', '|---|---|---|---|---|---|---|',
      *rows, '',
      f'{result["num_examples"]} test examples ({result["split"]} split); the models are '
      'never chosen on it.',
      f'Groups by training images per class: Many > {conv["many_threshold"]} '
      f'({sizes["many"]} classes), Medium {conv["few_threshold"]}..{conv["many_threshold"]} '
      f'inclusive ({sizes["medium"]}), Few < {conv["few_threshold"]} ({sizes["few"]}); '
      'group accuracy = unweighted mean of per-class accuracy.',
      f'ECE/MCE: {conv["num_bins"]} equal-width bins, confidence = max softmax probability.',
  ]
  return '\n'.join(lines) + '\n'


def plot_reliability(result: dict, path: str):
  bins = [b for b in result['calibration_bins'] if b['count']]
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  width = 1.0 / len(result['calibration_bins'])
  ax.bar([b['lo'] for b in bins], [b['accuracy'] for b in bins], width=width, align='edge',
         edgecolor='black', label='accuracy')
  ax.plot([0, 1], [0, 1], 'r--', label='perfect calibration')
  ax.set(xlabel='confidence', ylabel='accuracy', xlim=(0, 1), ylim=(0, 1),
         title=f'ECE {_pct(result["ece"])}%  MCE {_pct(result["mce"])}%')
  ax.legend(loc='upper left')
  _save(fig, path)


def plot_per_class(result: dict, class_counts, path: str):
  acc = np.array([np.nan if a is None else a for a in result['per_class_accuracy']])
  fig, ax = plt.subplots(figsize=(5.5, 4))
  ax.scatter(np.asarray(class_counts), 100 * acc, s=12)
  ax.set_xscale('log')
  ax.set(xlabel='training images of the class (log scale)', ylabel='test accuracy (%)',
         ylim=(0, 100), title='per-class accuracy vs training count')
  for t in (result['convention']['many_threshold'], result['convention']['few_threshold']):
    ax.axvline(t, color='gray', ls=':')
  _save(fig, path)


def _save(fig, path):
  """PNG bytes written through epath, so `path` may be gs://."""
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', dpi=100)
  plt.close(fig)
  epath.Path(path).write_bytes(buffer.getvalue())


def write(result: dict, class_counts, out_dir, title: str) -> str:
  """Writes report.json, report.md and the plots to `out_dir` (local or gs://); returns the
  Markdown."""
  out_dir = epath.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / 'report.json').write_text(json.dumps(
      {**result, 'class_counts': [int(c) for c in class_counts]}, indent=1))
  md = markdown(result, title)
  (out_dir / 'report.md').write_text(md)
  plot_reliability(result, out_dir / 'reliability.png')
  plot_per_class(result, class_counts, out_dir / 'per_class_accuracy.png')
  return md
