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


@pytest.mark.parametrize("planted", ["link", "folder"])
def test_a_lock_that_is_not_a_plain_file_is_refused_and_nothing_is_written_through_it(tmp_path: Path, planted: str):
    """Probe: a symbolic link planted at a shared run folder's .fit.lock made the fit write its pid over the link's
    target (a file of the user's: "IMPORTANT DATA" became "8862")."""
    run_dir, victim = tmp_path / "runs" / "m", tmp_path / "victim.txt"
    run_dir.mkdir(parents=True)
    victim.write_text("IMPORTANT DATA")
    if planted == "link":
        (run_dir / ".fit.lock").symlink_to(victim)
    else:
        (run_dir / ".fit.lock").mkdir()
    with pytest.raises(ValueError, match=rf"^cannot open the run folder's lock {run_dir}/\.fit\.lock \(.*\): it must "
                                         r"be a plain file this user can write; remove it, or give the fit another "
                                         r"--run-dir$"), only_fit_of(run_dir):
        pass
    assert victim.read_text() == "IMPORTANT DATA"
