"""Tables written into a page between `<!-- generated: NAME -->` and `<!-- end: NAME -->`
markers, from committed results; `update` rewrites the page or, with check, says it is stale."""
import re
import sys


def fill(page: str, name: str, text: str) -> str:
  """`page` with the text between NAME's markers replaced by `text`."""
  pattern = re.compile(rf'(<!-- generated: {name} -->\n).*?(\n<!-- end: {name} -->)', re.S)
  if not pattern.search(page):
    raise ValueError(f'no <!-- generated: {name} --> ... <!-- end: {name} --> markers: add them '
                     'where the table goes')
  return pattern.sub(lambda m: m.group(1) + text + m.group(2), page)


def update(path: str, name: str, text: str, check: bool, command: str) -> int:
  """Writes NAME's table into the page at `path`; with `check` only compares (1: stale)."""
  with open(path) as f:
    page = f.read()
  new = fill(page, name, text)
  if check:
    if new != page:
      print(f'{path}: the {name} table differs from the committed results: run {command}',
            file=sys.stderr)
    return int(new != page)
  if new != page:
    with open(path, 'w') as f:
      f.write(new)
    print(f'rewrote {path}')
  return 0
