"""Progress a person can read: a bar on a terminal, plain lines in a log (one per epoch or
per 10 % of a long step, never a bar's redraws), and `-q` silencing MLflow's download bars.

The terminal cases run the CLI on a pseudo-terminal with a window size (tqdm draws nothing
on a terminal zero columns wide), the log cases with standard output and error on pipes."""
import fcntl
import io
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from analog.progress import LineProgress, on_terminal, progress

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "experiments" / "xor.yaml"


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_one_line_per_tenth_and_one_at_the_end():
    out = io.StringIO()
    with progress(1000, "embed", "image", stream=out) as bar:
        for _ in range(100):
            bar.update(10)
            bar.set_postfix(loss="0.5")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 10, lines                       # 10 %, ..., 90 %, then the closing line
    assert [line.split("(")[1].split(")")[0] for line in lines] == [f"{p} %" for p in range(10, 101, 10)]
    assert lines[0].startswith("embed: 100/1000 image (10 %)") and lines[0].endswith("loss=0.5")
    assert lines[-1].startswith("embed: 1000/1000 image (100 %)")


def test_a_jump_over_several_tenths_prints_one_line():
    out = io.StringIO()
    bar = LineProgress(100, "x", stream=out)
    bar.update(35)          # past 10, 20 and 30 %: one line
    bar.update(1)
    bar.update(4)           # 40 %
    assert [line.split(" ")[1] for line in out.getvalue().splitlines()] == ["35/100", "40/100"]


def test_per_epoch_bars_print_nothing_or_only_their_closing_line():
    out = io.StringIO()
    with progress(500, "epoch 1/3", "sample", every=None, final=False, stream=out) as bar:
        bar.update(500)
    assert out.getvalue() == ""
    with progress(500, "in-situ epoch 1/3", "sample", every=None, stream=out) as bar:
        for _ in range(50):
            bar.update(10)
    assert len(out.getvalue().splitlines()) == 1 and "500/500 sample" in out.getvalue()


def test_an_interrupted_loop_has_no_closing_line_and_disabled_shows_nothing():
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with progress(10, "x", every=None, stream=out):
            raise KeyboardInterrupt
    with progress(10, "x", enabled=False, stream=_Terminal()) as bar:
        bar.update(10)
        bar.write("hidden")
    assert out.getvalue() == ""


def test_a_bar_on_a_terminal_only():
    from tqdm import tqdm
    term = _Terminal()
    assert on_terminal(term) and not on_terminal(io.StringIO())
    bar = progress(10, "x", stream=term)
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(progress(10, "x", stream=io.StringIO()), LineProgress)
    with pytest.raises(ValueError, match="every=0"):
        LineProgress(10, every=0)


def _env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"}
    return dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}", PYTHONPATH=str(ROOT),
                MIXSIG_HOME=str(tmp))


def _on_terminal(tmp: Path, *args, timeout=120) -> str:
    """Run `mixsig *args` with stdout and stderr on a pseudo-terminal 120 columns wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, args)], cwd=tmp, env=_env(tmp),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                proc.kill()
                raise AssertionError(f"mixsig {args} silent for {timeout} s:\n{b''.join(chunks).decode()[-2000:]}")
            try:
                data = os.read(master, 65536)
            except OSError:          # EIO: the terminal's other end closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(30)
    out = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-epoch xor block trained with output on pipes (as in a job's log): its run id, folder."""
    tmp = tmp_path_factory.mktemp("progress")
    proc = subprocess.run([sys.executable, "-m", "pipeline", "train-analog", XOR, "--set", "training.epochs=3"],
                          cwd=tmp, env=_env(tmp), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = proc.stdout.split("train-analog run ", 1)[1].split()[0]
    return tmp, run_id, proc


def test_a_piped_command_prints_one_line_per_epoch(trained):
    _, _, proc = trained
    text = proc.stdout + proc.stderr
    assert "\r" not in text, text[:2000]
    epochs = [line for line in proc.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1", "epoch 2", "epoch 3"]
    assert len(text.splitlines()) <= 15, text


def _robustness(tmp: Path, run_id: str, *extra) -> str:
    import shutil
    shutil.rmtree(tmp / "runs", ignore_errors=True)      # the block is downloaded from the run again
    return _on_terminal(tmp, "robustness", run_id, "--axes", "prog_sigma", "--grid", "prog_sigma=0.1",
                        "--seeds", "1", "--extend", "0", *extra)


def test_on_a_terminal_mlflow_bars_show_and_minus_q_silences_them(trained):
    tmp, run_id, _ = trained
    shown = _robustness(tmp, run_id)
    assert "Downloading artifacts" in shown and "robustness run" in shown, shown[-2000:]
    quiet = _robustness(tmp, run_id, "-q")
    assert "Downloading artifacts" not in quiet and "robustness run" in quiet, quiet[-2000:]
    assert "prog_sigma=0.1:" not in quiet                 # its own progress lines are off too


def test_on_a_terminal_the_epochs_are_bars(trained):
    tmp, _, _ = trained
    out = _on_terminal(tmp, "train-analog", XOR, "--set", "training.epochs=1")
    assert "epoch 1/1: 100%" in out and "\r" in out, out[-2000:]
