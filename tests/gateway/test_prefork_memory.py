"""The gunicorn master's copy of the app: importing `messages` leaves its objects frozen, so a
forked worker's garbage collections do not copy the pages it shares with the master."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Imports main.py as functions-framework does in the master, then forks a "worker" that
# runs full collections; reports the worker's private memory (USS), as imported and
# once more after gc.unfreeze() (what an unfrozen master would cost).
_PROBE = """
import gc, os, sys, importlib.util, psutil
spec = importlib.util.spec_from_file_location("main", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

def worker_private_mb():
    # One pipe each way: with a single pipe the child could read back its own byte.
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(3):
            gc.collect()
        os.write(ready_w, b"x")
        os.read(done_r, 1)
        os._exit(0)
    os.read(ready_r, 1)
    uss = psutil.Process(pid).memory_full_info().uss
    os.write(done_w, b"x")
    os.waitpid(pid, 0)
    for fd in (ready_r, ready_w, done_r, done_w):
        os.close(fd)
    return uss / 2**20

frozen = gc.get_freeze_count()
as_imported = worker_private_mb()
gc.unfreeze()
print(frozen, as_imported, worker_private_mb())
"""


def test_importing_messages_freezes_its_objects_so_the_worker_shares_the_masters_pages() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT / "functions" / "messages" / "main.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    frozen, as_imported, unfrozen = out.stdout.split()
    assert int(frozen) > 10_000  # the imported modules' objects, not a handful
    # Unfrozen, the worker's collections write to every object's header and copy its page.
    assert float(as_imported) < float(unfrozen) / 2, out.stdout
