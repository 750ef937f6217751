"""A queued DVC experiment links its inputs from the cache instead of copying them (the project's .dvc/config),
and the links are protected: a non-root user cannot edit the cache through them. It starts DVC's queue (a celery
worker, ~20 s): the slow tier."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("offline_run")]
INPUT_BYTES = 20_000_000
MEASURE = """
import json, os, sys
own = 0  # bytes of the workspace's files that are not links into the cache
for root, dirs, files in os.walk("."):
    dirs[:] = [d for d in dirs if d not in (".git", ".dvc")]
    for name in files:
        path = os.path.join(root, name)
        if not os.path.islink(path) and os.stat(path).st_nlink == 1:
            own += os.stat(path).st_size
info = os.lstat("big.bin")
json.dump({"own_bytes": own, "symlink": os.path.islink("big.bin"), "nlink": info.st_nlink}, open(sys.argv[1], "w"))
open("out.txt", "w").write(str(os.path.getsize("big.bin")))
"""


def run(args, cwd):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo():
    folder = Path(tempfile.mkdtemp(prefix="depthcore-queue-"))
    os.chmod(folder, 0o755)  # readable by the unprivileged user of the protection check
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_queued_run_links_its_inputs_and_the_cache_stays_protected(repo):
    run(["git", "init", "-q"], repo)
    run(["git", "config", "user.email", "t@example.com"], repo)
    run(["git", "config", "user.name", "t"], repo)
    run([DVC, "init", "-q"], repo)
    shutil.copy(REPO / ".dvc" / "config", repo / ".dvc" / "config")  # the project's cache settings
    (repo / "measure.py").write_text(MEASURE)
    report = repo / "report.json"  # written outside DVC's view by the queued run's stage
    (repo / "params.yaml").write_text("p: 1\n")
    (repo / "dvc.yaml").write_text(
        "stages:\n"
        "  big:\n"
        f"    cmd: python -c \"import os; open('big.bin', 'wb').write(os.urandom({INPUT_BYTES}))\"\n"
        "    outs: [big.bin]\n"
        "  use:\n"
        f"    cmd: {sys.executable} measure.py {report}\n"
        "    deps: [big.bin, measure.py]\n"
        "    params: [p]\n"
        "    outs: [out.txt]\n"
    )
    env_path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    os.environ["PATH"], saved = env_path, os.environ["PATH"]
    try:
        run([DVC, "repro", "-q"], repo)
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "inputs"], repo)
        report.unlink()
        run([DVC, "exp", "run", "--queue", "-S", "p=2", "-q"], repo)
        run([DVC, "exp", "run", "--run-all", "--jobs", "1"], repo)
    finally:
        os.environ["PATH"] = saved
    measured = json.loads(report.read_text())
    assert measured["symlink"] or measured["nlink"] >= 2  # the input is the cache's file, not a copy
    assert measured["own_bytes"] <= 0.01 * INPUT_BYTES  # the queued run added <= 1 % of its input's size

    # protected: the workspace's input is read-only; an unprivileged user can read it but not edit it in place
    big = repo / "big.bin"
    digest = hashlib.md5(big.read_bytes()).hexdigest()
    cached = repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
    assert cached.exists() and (big.is_symlink() or os.stat(big).st_ino == os.stat(cached).st_ino)
    assert not os.stat(cached).st_mode & 0o222
    os.chmod(repo / ".dvc", 0o755)
    # a shell, not this venv's python (the unprivileged user may not reach it): read, then write in place
    probe = f"head -c 16 {big} > /dev/null && printf x | dd of={big} conv=notrunc status=none"
    demote = (lambda: (os.setgid(65534), os.setuid(65534))) if os.geteuid() == 0 else None
    result = subprocess.run(["sh", "-c", probe], preexec_fn=demote, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Permission denied" in result.stderr and "head" not in result.stderr
    assert hashlib.md5(cached.read_bytes()).hexdigest() == digest
