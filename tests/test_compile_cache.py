"""The command line keeps compiled programs between runs in JAX's persistent cache
(JAXPROBE_COMPILE_CACHE, default ~/.cache/jaxprobe/xla), and --no-compile-cache or =off turns it off."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys, jax, jax.numpy as jnp
    from jaxprobe.cli import _compile_cache, build_parser
    args = build_parser().parse_args(sys.argv[1:] + ["info", "classifier"])
    _compile_cache(args)
    f = jax.jit(lambda x: jnp.sin(x) @ x.T)
    print(float(f(jnp.ones((64, 64))).sum()))
""")


def _run(tmp_path, env_value, *flags):
    env = dict(os.environ, JAXPROBE_COMPILE_CACHE=env_value, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", SCRIPT, *flags], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]


def test_programs_are_kept_in_the_cache_directory_unless_turned_off(tmp_path):
    cache = tmp_path / "xla"
    _run(tmp_path, str(cache))
    assert cache.is_dir() and any(cache.rglob("*-cache")), "nothing was written to the compile cache"
    # Bounded and locked: JAX keeps an access time per program and a lock file only when given a size.
    assert any(cache.rglob("*-atime")) and (cache / ".lockfile").exists()
    off = tmp_path / "off"
    _run(tmp_path, str(off), "--no-compile-cache")
    assert not off.exists()
    _run(tmp_path, "off")  # and the environment switch
