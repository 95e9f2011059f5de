"""Test-wide settings: run servers as root only inside CI containers, keep registries private."""
import os
import tempfile

import pytest

# CI runs as root in a throw-away container; the servers refuse root unless told otherwise.
if hasattr(os, "geteuid") and os.geteuid() == 0:
    os.environ.setdefault("PYME_DESK_ALLOW_ROOT", "1")

# Never read the developer's own ~/.PYME/config.yaml in tests.
os.environ["PYME_DESK_CONFIG"] = os.devnull

# Same-machine sqlite registries live in tempfile.gettempdir(); give the whole run its own.
_RUN_TMP = tempfile.mkdtemp(prefix="pyme-desk-tests-")
os.environ["TMPDIR"] = _RUN_TMP
tempfile.tempdir = _RUN_TMP


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return root
