"""Ctrl-C, closed pipes and argument errors end the `jaxprobe` process in one line, leaving nothing.

Each case runs the real command line in a subprocess (signals and exit statuses are the process's)."""

import os
import signal
import subprocess
import sys
import textwrap
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
