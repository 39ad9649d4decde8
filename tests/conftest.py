import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture
def sms():
    """The SMS Spam Collection from ../shared/data; skips (fails under CI) with why when it is missing."""
    from helpers import need_sms

    return need_sms()


class Result:
    def __init__(self, code, stdout, stderr):
        self.exit_code, self.stdout, self.stderr = code, stdout, stderr

    def json(self):
        return json.loads(self.stdout)


@pytest.fixture
def cli():
    """Run the odml CLI in-process (TensorFlow, once imported, stays warm)."""
    from typer.testing import CliRunner

    from odml.cli.app import app

    runner = CliRunner()

    def run(*args):
        r = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        return Result(r.exit_code, r.stdout, r.stderr)

    return run


@pytest.fixture
def cli_proc():
    """Run the odml CLI as a separate process, exactly as a user would."""

    def run(*args, env=None, timeout=300, cwd=None):
        cmd = [sys.executable, "-c", "from odml.cli.app import main; main()", *map(str, args)]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
                           cwd=cwd)
        return Result(p.returncode, p.stdout, p.stderr)

    return run
