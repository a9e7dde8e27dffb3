"""Ctrl-C, closed pipes and argument errors end the `jaxprobe` process in one line, leaving nothing.

Each case runs the real command line in a subprocess (signals and exit statuses are the process's)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

ENV = dict(os.environ, JAX_PLATFORMS="cpu")


def _jaxprobe(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "jaxprobe", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, **kw)


def _interrupted(p, deadline=5.0):
    """Send SIGINT; return (status, stderr, seconds to exit)."""
    p.send_signal(signal.SIGINT)
    t = time.monotonic()
    _, err = p.communicate(timeout=60)
    return p.returncode, err, time.monotonic() - t


@pytest.mark.parametrize("delay", [0.6, 6.0])  # while importing (numpy, JAX); while loading or sampling
def test_sigint_stops_a_long_ppgn_with_130_and_leaves_nothing(tmp_path, delay):
    p = _jaxprobe("ppgn", "--class", "3", "--chains", "2", "--steps", "20000", "--out", str(tmp_path / "out"))
    time.sleep(delay)
    assert p.poll() is None, "the command ended before it was interrupted"
    status, err, took = _interrupted(p)
    assert status == 130, err
    assert err.strip().splitlines()[-1] == "jaxprobe: interrupted" and "Traceback" not in err
    assert took < 4.0
    assert os.listdir(tmp_path) == []  # no --out, no temporary, no lock


# Every command that writes, interrupted once its progress bar shows (loading and compiling done,
# the work under way); the ppgn test above covers the import and the load.
LONG = {
    "egbas": ["egbas", "--layer", "1", "--n", "100000", "--iterations", "1000000", "--beropt-steps", "20",
              "--lambda", "0.01"],
    "dgn-am": ["dgn-am", "--neuron", "logits:3", "--steps", "1000000"],
    "inverse-set": ["inverse-set", "--neuron", "logits:3", "--range", "4", "6", "--n", "100000", "--k", "4"],
    "excite": ["excite", "--target", "logits:3", "--steps", "3000"],  # progress ticks between its 20 chunks
    "reproduce egbas": ["reproduce", "egbas", "--queries", "50", "--layers", "1", "--beropt-steps", "20"],
    "reproduce inverse-set": ["reproduce", "inverse-set", "--n", "100000", "--k", "4"],
    "reproduce dgn-am": ["reproduce", "dgn-am", "--classes", "3", "--steps", "1000000"],
    "reproduce ppgn": ["reproduce", "ppgn", "--classes", "3", "--chains", "2", "--steps", "20000"],
    "reproduce excite": ["reproduce", "excite", "--classes", "3", "--steps", "3000"],
    "demo": ["demo"],
}


def _wait_for_bar(p, timeout=120.0):
    """Read the process's stderr in a thread until a tqdm bar ("|" after a percentage or a rate)
    shows; return what it had printed."""
    seen, done = [], threading.Event()

    def read():
        while not done.is_set():
            ch = p.stderr.read(1)
            if not ch:
                break
            seen.append(ch)
            text = "".join(seen[-200:])
            if "%|" in text or "it/s" in text or "s/it" in text or "step/s" in text or "/s]" in text:
                done.set()
    t = threading.Thread(target=read, daemon=True)
    t.start()
    assert done.wait(timeout) or p.poll() is not None, "no progress bar within the time limit"
    return "".join(seen)


@pytest.mark.parametrize("name", sorted(LONG))
def test_sigint_on_each_command_gives_130_and_leaves_nothing(tmp_path, name):
    """Each command interrupted once its progress bar shows (loading and compiling done, the work
    under way). The import, the same for every command, is the ppgn test's 0.6 s point."""
    p = _jaxprobe(*LONG[name], "--out", str(tmp_path / "out"), cwd=tmp_path)
    before = _wait_for_bar(p)
    assert p.poll() is None, f"{name} ended before it was interrupted: {before[-2000:]}"
    p.send_signal(signal.SIGINT)
    t = time.monotonic()
    p.wait(timeout=60)
    took = time.monotonic() - t
    rest = p.stderr.read()
    err = (before + rest).replace("\r", "\n")
    assert p.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "jaxprobe: interrupted" and "Traceback" not in err, err[-2000:]
    assert took < 4.0
    assert os.listdir(tmp_path) == []  # no --out, no temporary, no lock


# A command that swallows KeyboardInterrupt (as a JAX callback may) while it writes its output:
# the watchdog must still end it, removing the half-written directory and the lock.
STUBBORN = textwrap.dedent("""
    import os, sys, time
    import jaxprobe.cli as cli
    from jaxprobe.io import atomic_dir

    def stubborn(args):
        with atomic_dir(os.environ["OUT"], name="--out") as tmp:
            (tmp / "half.txt").write_text("half")
            print("writing", flush=True)
            while True:
                try:
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    pass

    cli._cmd_info = stubborn
    sys.argv = ["jaxprobe", "info", "x"]
    sys.exit(cli.main())
""")


@pytest.mark.parametrize("second", [False, True])
def test_sigint_ends_a_command_that_swallows_it_and_removes_its_temporaries(tmp_path, second):
    out = tmp_path / "out"
    from jaxprobe.io import atomic_dir

    with atomic_dir(out) as tmp:  # an earlier result, which must survive
        (tmp / "good.txt").write_text("good")
    p = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=dict(ENV, OUT=str(out)))
    assert p.stdout.readline().strip() == "writing"
    assert any(n.startswith(".out.tmp-") for n in os.listdir(tmp_path))
    if second:
        p.send_signal(signal.SIGINT)
        time.sleep(0.1)
    status, err, took = _interrupted(p)
    assert status == 130 and err.strip() == "jaxprobe: interrupted", err
    assert took < (0.5 if second else 2.5)
    assert sorted(os.listdir(tmp_path)) == ["out"]
    assert (out / "good.txt").read_text() == "good" and not (out / "half.txt").exists()


def test_closed_pipe_ends_quietly():
    p = subprocess.run(f"{sys.executable} -m jaxprobe info classifier | head -1", shell=True, capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert p.stdout.startswith("classifier: classifier") and p.stdout.count("\n") == 1
    assert p.stderr == ""


def test_argument_errors_are_one_line():
    p = _jaxprobe("ppgn", "--chains", "x")
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2
    assert err.count("\n") == 1 and err.startswith("jaxprobe ppgn: error: argument --chains")
    assert "see jaxprobe ppgn --help" in err and "usage" not in err
