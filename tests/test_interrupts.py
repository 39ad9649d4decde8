"""A Ctrl-C swallowed by code in between (a finaliser, a py_function) is raised
again at the next check of a training loop."""

import subprocess
import sys

SCRIPT = r"""
import os, signal
from odml import interrupts
interrupts.install()
try:
    os.kill(os.getpid(), signal.SIGINT)

    for _ in range(1000): pass
except KeyboardInterrupt:
    pass  # what a swallowing finaliser does
try:
    interrupts.check()
    print("lost")
except KeyboardInterrupt:
    print("raised again")
interrupts.check()  # handled once: nothing pending now

interrupts._pending["sigint"] = True
interrupts.clear()  # a new command starts clean
interrupts.check()
print("clean")
"""


def test_swallowed_ctrl_c_is_raised_again_and_cleared():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["raised", "again", "clean"]


def test_a_host_programs_own_handler_is_kept():
    r = subprocess.run([sys.executable, "-c", "import signal\nh = lambda s, f: None\nsignal.signal(signal.SIGINT, h)\n"
                        "from odml import interrupts\ninterrupts.install()\nprint(signal.getsignal(signal.SIGINT) is h)"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "True", r.stderr
