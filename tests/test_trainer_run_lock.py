"""One fit at a time per run folder (trainer/run_lock.py), across processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trainer.cli import main
from trainer.run_lock import only_fit_of

HOLD = """
import sys, time
from pathlib import Path
from trainer.cli import main
from trainer.run_lock import only_fit_of
with only_fit_of(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_fit_of_one_run_folder_is_refused_while_the_first_runs(tmp_path: Path):
    """QA: two fits of one --name and --run-dir each trained at half speed on one checkpoint (83 steps of about
    300), and both reported their bundle, unsaid."""
    run_dir = tmp_path / "runs" / "m"
    first = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        refused = rf"another fit is running in {run_dir} \(pid {first.pid}\): wait for it to end, or give this one"
        with pytest.raises(ValueError, match=refused), only_fit_of(run_dir):
            pass
    finally:
        first.kill()
        first.wait()
    with only_fit_of(run_dir):  # the lock goes with the process, however it ended
        pass


def test_the_fit_command_takes_the_lock_before_it_trains(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    train = tmp_path / "data.csv"
    train.write_text("text,label\n" + "".join(f"hello {i},greet\nbye {i},farewell\n" for i in range(10)))
    run_dir = tmp_path / "runs" / "data"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        status = main(["fit", "--train", str(train), "--out", str(tmp_path / "bundles"),
                       "--run-dir", str(tmp_path / "runs"), "--time-budget", "1"])
    finally:
        holder.kill()
        holder.wait()
    assert status == 2 and f"another fit is running in {run_dir}" in capsys.readouterr().err
    assert not (tmp_path / "bundles" / "data").exists()
