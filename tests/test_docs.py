# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The docs have no dangling references: every file, directory, link target and anchor they point
at exists in the repository, and every `make <target>` they show is a target of the Makefile.

Checked: the README files, docs/*.md, the collection's README and its roles' READMEs, the
Terraform module README and the inventory's secrets README. References are

* Markdown links ``[text](target)`` (relative to the document; ``#anchor`` against the headings
  of the target, GitHub's slug rules);
* repository paths in code (inline or fenced) that start with a top-level directory of the
  repository (``docs/``, ``playbooks/``, ``scripts/``, ``tests/``, ...) or of the collection
  (``roles/``, ``plugins/``, ``changelogs/``); paths with placeholders (``<cell>``, ``*``,
  ``{a,b}``, ``...``) and generated trees (``build/``, ``.cache/``) are not files to find;
* ``make <target>`` in code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
COLLECTION = REPO / 'ansible_collections' / 'cellplatform' / 'platform'
DOCS = sorted(
    [REPO / 'README.md', COLLECTION / 'README.md',
     COLLECTION / 'roles' / 'l0_infrastructure' / 'files' / 'terraform' / 'proxmox' / 'README.md',
     REPO / 'inventories' / 'production' / 'secrets' / 'README.md']
    + list((REPO / 'docs').glob('*.md')) + list((COLLECTION / 'roles').glob('*/README.md')))

REPO_DIRS = ('docs', 'playbooks', 'scripts', 'tests', 'molecule', 'inventories', 'ansible_collections', '.ci')
COLLECTION_DIRS = ('roles', 'plugins', 'changelogs', 'meta')
_LINK_RE = re.compile(r'(?<!!)\[[^\]]*\]\(([^)\s]+)\)')
_FENCE_RE = re.compile(r'^```.*?^```', re.M | re.S)
_INLINE_RE = re.compile(r'`([^`\n]+)`')
_PATH_RE = re.compile(r'(?<![\w./<>-])((?:%s)/[^\s`\'"()\[\],;|=]*)' % '|'.join(
    re.escape(d) for d in REPO_DIRS + COLLECTION_DIRS))
_MAKE_RE = re.compile(r'(?:^|[\s;&|(])make ([a-z][\w-]*)', re.M)
_PLACEHOLDER = re.compile(r'[<>*{}]|\.\.\.|…')


def code_texts(text):
    """Fenced blocks and inline code spans of a Markdown text."""
    fences = _FENCE_RE.findall(text)
    rest = _FENCE_RE.sub('', text)
    return fences + _INLINE_RE.findall(rest)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r'`|\*\*|\*', '', heading.strip().lower())
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(path):
    text = _FENCE_RE.sub('', path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r'^#{1,6}\s+(.+?)\s*#*\s*$', text, re.M)}


def make_targets():
    text = (REPO / 'Makefile').read_text()
    return set(re.findall(r'^([a-z][\w-]*)\s*:', text, re.M))


def exists(ref, doc):
    """A path as the docs write it: relative to the repository, the collection, the document, or
    to a role (``meta/argument_specs.yml``: the file every role has)."""
    ref = ref.rstrip('.,:;)')
    bases = [REPO, COLLECTION, doc.parent]
    if ref.startswith('meta/'):
        bases += sorted((COLLECTION / 'roles').iterdir())
    return any((base / ref).exists() for base in bases)


def dangling(doc):
    text = doc.read_text()
    problems = []
    for target in _LINK_RE.findall(_FENCE_RE.sub('', text)):
        if re.match(r'^(https?|mailto):', target):
            continue
        path_part, _sep, anchor = target.partition('#')
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            problems.append('link %s: %s does not exist' % (target, path.relative_to(REPO) if REPO in path.parents
                                                              else path))
        elif anchor and path.suffix == '.md' and anchor not in anchors(path):
            problems.append('link %s: no heading #%s in %s' % (target, anchor, path.relative_to(REPO)))
    for code in code_texts(text):
        for ref in _PATH_RE.findall(code):
            if _PLACEHOLDER.search(ref) or ref.rstrip('/') in REPO_DIRS + COLLECTION_DIRS:
                continue
            if not exists(ref, doc):
                problems.append('path %s does not exist' % ref.rstrip('.,:;)'))
        for target in _MAKE_RE.findall(code):
            if target not in make_targets():
                problems.append('make %s: no such target in the Makefile' % target)
    return problems


@pytest.mark.parametrize('doc', DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_every_reference_of_the_docs_exists(doc):
    assert dangling(doc) == []


def test_the_check_finds_dangling_references(tmp_path):
    doc = REPO / 'docs' / '__probe__.md'
    doc.write_text('See [gone](gone.md), [anchor](secrets.md#no-such-heading), [ok](secrets.md#recovery).\n'
                   'Run `playbooks/upgrade-everything.yml`, `make deploy`, `make render` and read '
                   '`docs/secrets.md`, `roles/component/README.md`, `inventories/<cell>/hosts.yml`.\n')
    try:
        problems = dangling(doc)
    finally:
        doc.unlink()
    assert problems == [
        'link gone.md: docs/gone.md does not exist',
        'link secrets.md#no-such-heading: no heading #no-such-heading in docs/secrets.md',
        'path playbooks/upgrade-everything.yml does not exist',
        'make deploy: no such target in the Makefile',
    ]
    assert len(DOCS) >= 15
