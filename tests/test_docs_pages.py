"""The docs cannot drift from the tree: architecture.md lists every module, links resolve.

- docs/architecture.md's "Package layout" block names every module of `livt_jax/` and
  `benchmarks/` (`*.py` except `__init__.py`) and every script in `launch/`, and names nothing
  that is not in the tree. The block is a tree: one entry per line, folders end in `/`, two
  spaces of indentation per level.
- Every relative link in README.md and docs/*.md points at a file that exists, and a link to a
  heading of a Markdown page (`page.md#anchor`) at a heading that page has (GitHub's anchors).
"""
import glob
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
PAGES = [os.path.join(ROOT, 'README.md')] + sorted(glob.glob(os.path.join(ROOT, 'docs', '*.md')))
LINK = re.compile(r'\]\(([^)\s]+)\)')


def layout_entries(page: str) -> list[str]:
  """The paths the "## Package layout" code block lists, relative to the repository root
  (folders with a trailing `/`)."""
  section = page.split('\n## Package layout\n', 1)[1].split('\n## ', 1)[0]
  block = [line[4:] for line in section.splitlines() if line.startswith('    ')]
  assert block, 'no indented code block under "## Package layout"'
  folders, out = [], []
  for line in block:
    indent = len(line) - len(line.lstrip(' '))
    assert indent % 2 == 0 and indent // 2 <= len(folders), f'bad indentation: {line!r}'
    del folders[indent // 2:]
    name = line.split()[0]
    out.append(''.join(folders) + name)
    if name.endswith('/'):
      folders.append(name)
  return out


def tree_files() -> set[str]:
  """What the layout must name: modules of livt_jax/ and benchmarks/, scripts of launch/."""
  found = set()
  for package in ('livt_jax', 'benchmarks'):
    for path in glob.glob(os.path.join(ROOT, package, '**', '*.py'), recursive=True):
      if os.path.basename(path) != '__init__.py':
        found.add(os.path.relpath(path, ROOT))
  found |= {os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'launch', '*'))
            if os.path.isfile(p)}
  return found


def test_architecture_lists_every_module_and_nothing_else():
  with open(os.path.join(ROOT, 'docs', 'architecture.md')) as f:
    entries = layout_entries(f.read())
  missing = sorted(tree_files() - set(entries))
  assert not missing, f'docs/architecture.md "Package layout" does not name: {missing}'
  absent = [e for e in entries if not os.path.exists(os.path.join(ROOT, e))]
  assert not absent, f'docs/architecture.md "Package layout" names what is not there: {absent}'
  assert len(entries) == len(set(entries)), 'an entry is listed twice'


def test_the_layout_parser_builds_paths_from_indentation():
  # The check above can fail: a module left out of the block, or put under the wrong folder,
  # is a path the tree has and the block does not.
  page = '\n'.join(['# x', '', '## Package layout', '', '    livt_jax/', '      main.py   entry',
                    '      aot/      the plan', '        search.py  grid', '      data/',
                    '        sources.py', '    launch/', '      setup.sh', '', '## Next', '',
                    '    not/  a layout line'])
  assert layout_entries(page) == [
      'livt_jax/', 'livt_jax/main.py', 'livt_jax/aot/', 'livt_jax/aot/search.py',
      'livt_jax/data/', 'livt_jax/data/sources.py', 'launch/', 'launch/setup.sh']
  assert 'livt_jax/aot/search.py' in tree_files()
  assert 'launch/tpu_pod.sh' in tree_files()
  assert 'livt_jax/aot/__init__.py' not in tree_files()


def anchor(heading: str) -> str:
  """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
  text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
  return text.replace(' ', '-')


def anchors(path: str) -> set[str]:
  with open(path) as f:
    text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
  return {anchor(m.group(1)) for m in re.finditer(r'^#{1,6} (.+)$', text, flags=re.M)}


def relative_links(path: str) -> list[str]:
  with open(path) as f:
    text = f.read()
  return [t for t in LINK.findall(text) if not re.match(r'[a-z]+:', t)]


def test_every_relative_link_resolves():
  broken = []
  for page in PAGES:
    for target in relative_links(page):
      file, _, frag = target.partition('#')
      dest = os.path.normpath(os.path.join(os.path.dirname(page), file)) if file else page
      where = f'{os.path.relpath(page, ROOT)}: ({target})'
      if not os.path.exists(dest):
        broken.append(f'{where}: no such file')
      elif frag and dest.endswith('.md') and frag not in anchors(dest):
        broken.append(f'{where}: no heading with that anchor')
  assert not broken, '\n'.join(broken)


def test_the_link_check_sees_links_and_anchors():
  assert anchor('Resume, preemption, faults') == 'resume-preemption-faults'
  assert anchor('`pip install` and the extras') == 'pip-install-and-the-extras'
  with open(os.path.join(ROOT, 'docs', 'index.md')) as f:
    links = LINK.findall(f.read())
  assert '../README.md' in links and 'architecture.md' in links
  assert not any('scale_out_notes' in t for page in PAGES for t in relative_links(page))


MODULE_COMMAND = re.compile(r'python3? -m ((?:livt_jax|benchmarks)(?:\.\w+)*)')


def test_every_module_a_page_runs_exists():
  """Every `python -m` of a livt_jax or benchmarks module in README, docs, launchers and
  docstrings names a module of the tree (a regroup cannot leave a command behind)."""
  sources = PAGES + glob.glob(os.path.join(ROOT, 'launch', '*')) + glob.glob(
      os.path.join(ROOT, '**', '*.py'), recursive=True)
  missing = []
  for path in sources:
    if '.venv' in path or not os.path.isfile(path):
      continue
    with open(path, errors='replace') as f:
      text = f.read()
    for module in set(MODULE_COMMAND.findall(text)):
      base = os.path.join(ROOT, *module.split('.'))
      if not (os.path.isfile(base + '.py') or os.path.isfile(os.path.join(base, '__main__.py'))):
        missing.append(f'{os.path.relpath(path, ROOT)}: python -m {module}')
  assert not missing, missing
