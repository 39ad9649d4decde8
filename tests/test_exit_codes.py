"""Exit codes a CI gate can tell apart: 0 ok, 1 a check failed (parity, a
budget), 2 bad input, 70 an internal error of odml's (a bug, not the user's
input), each from a real process."""

import os
import subprocess
import sys

import pytest
from helpers import assert_one_line_error

from odml.errors import BAD_INPUT, CHECK_FAILED, INTERNAL_ERROR, OK


def _run(*args, prelude=""):
    """odml as a process; ``prelude`` runs first (to plant a bug)."""
    code = f"{prelude}\nfrom odml.cli.app import main\nmain()"
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    class R:
        exit_code, stdout, stderr = p.returncode, p.stdout, p.stderr

    return R


@pytest.mark.fast
def test_the_codes_are_distinct():
    assert len({OK, CHECK_FAILED, BAD_INPUT, INTERNAL_ERROR}) == 4 and INTERNAL_ERROR not in (0, 1, 2, 130)


@pytest.mark.fast
def test_ok_is_0():
    r = _run("zoo", "list")
    assert r.exit_code == OK and "pqrnn" in r.stdout, r.stderr


@pytest.mark.fast
def test_bad_input_is_2(tmp_path):
    assert_one_line_error(_run("inspect", tmp_path / "none.tflite"), "none.tflite", code=BAD_INPUT)
    assert_one_line_error(_run("zoo", "show", "no_such_model"), "no_such_model", code=BAD_INPUT)


@pytest.mark.fast
def test_a_bug_of_odml_is_internal_error_not_a_failed_check():
    # a bug planted in the registry: any exception that is not an OdmlError is odml's fault
    bug = ("import odml.zoo.registry as r\n"
           "def broken(*a, **k):\n    raise ZeroDivisionError('planted')\n"
           "r.list_models = broken")
    r = _run("zoo", "list", prelude=bug)
    assert_one_line_error(r, "internal error: ZeroDivisionError: planted", "--debug", code=INTERNAL_ERROR)
    r = _run("--debug", "zoo", "list", prelude=bug)  # --debug: the traceback, and still not 1 or 2
    assert r.exit_code not in (OK, CHECK_FAILED, BAD_INPUT) and "Traceback" in r.stderr


def test_a_failed_budget_is_1_and_a_crash_in_the_same_gate_is_70(tmp_path):
    from odml.exporters.tflite import convert
    from odml.zoo import create_model, create_spec

    model = create_model(create_spec("mobilenet_edgetpu_v2_tiny", num_classes=10, input_size=32, width=0.25))
    (tmp_path / "m.tflite").write_bytes(convert(model, "fp32"))
    budget = tmp_path / "budgets.toml"
    budget.write_text('[[model]]\npath = "m.tflite"\nmax_size = "1 KB"\n')  # the file is ~100 KB: over budget
    assert_one_line_error(_run("bench", "--budget", budget), "budget", code=CHECK_FAILED)
    budget.write_text('[[model]]\npath = "m.tflite"\nmax_size = "10 MB"\n')
    assert _run("bench", "--budget", budget).exit_code == OK
    # the same gate when odml itself breaks: CI sees 70, not a regression
    bug = ("import odml.devices.budgets as b\n"
           "def broken(*a, **k):\n    raise KeyError('planted')\n"
           "b.evaluate = broken")
    r = _run("bench", "--budget", budget, prelude=bug)
    assert_one_line_error(r, "internal error: KeyError", code=INTERNAL_ERROR)
