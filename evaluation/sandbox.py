"""accel's sandbox for generated code (HumanEval's pass@1): each program in its own `python -I -B`
process, so a wrong, slow or hostile-by-accident completion is a failed sample and the run goes on.

What each run gets (docs/eval.md, "The sandbox", says what this protects against and what it does not):

- a fresh scratch working directory (``tempfile.mkdtemp``; HOME and TMPDIR point there), deleted after;
- an environment of PATH, LANG, HOME and TMPDIR only (no proxies, no tokens, no PYTHON* variables);
- `resource` limits set in ``preexec_fn``: RLIMIT_CPU (CPU seconds), RLIMIT_AS (address space),
  RLIMIT_NPROC (processes of the user: a fork bomb runs out of them), RLIMIT_FSIZE (largest file),
  RLIMIT_CORE 0;
- run as root (a container's usual user), it drops to ``nobody`` (uid 65534) first, because root is
  exempt from RLIMIT_NPROC; the scratch directory is handed to that user, so writes anywhere
  ``nobody`` has no permission (everything the caller owns) are refused by the kernel;
- no network: its own empty network namespace (``unshare -n``, or ``unshare -rn`` for a non-root user,
  tried once per process and used when the system permits it), and in every case a bootstrap that
  installs an audit hook (PEP 578) before the candidate code runs, refusing sockets (connect, bind,
  sendto, getaddrinfo), process spawning (exec, system, posix_spawn, Popen; fork stays, under
  RLIMIT_NPROC), ctypes and writes/renames/removals outside the scratch directory;
- a wall-clock timeout, after which (and after every run, to reap leftovers) its whole process group
  is killed.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

NOBODY = 65534
"""The uid/gid a root caller's programs run as (RLIMIT_NPROC does not bind root)."""

BOOTSTRAP = r'''
import os, sys
_scratch = os.path.realpath(os.getcwd())
_write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_refused = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo",
            "socket.gethostbyname", "socket.gethostbyaddr", "os.system", "os.exec", "os.posix_spawn",
            "os.spawn", "subprocess.Popen", "ctypes.dlopen", "ctypes.cdata", "os.startfile"}
_paths = {"os.remove": 1, "os.rmdir": 1, "os.mkdir": 1, "os.rename": 2, "os.symlink": 2, "os.link": 2,
          "os.truncate": 1, "os.chmod": 1, "os.chown": 1, "os.utime": 1, "shutil.rmtree": 1, "shutil.copyfile": 2}
def _inside(p):
    if isinstance(p, int):
        return True
    p = os.fsdecode(p)
    if p in ("/dev/null",):
        return True
    r = os.path.realpath(p)
    return r == _scratch or r.startswith(_scratch + os.sep)
def _hook(event, args):
    if event in _refused:
        raise PermissionError(f"accel sandbox: {event} is not allowed")
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (mode is None and flags & _write)
        if writing and not _inside(path):
            raise PermissionError(f"accel sandbox: write outside the scratch directory: {path!r}")
    elif event in _paths:
        for p in args[:_paths[event]]:
            if p is not None and not _inside(p):
                raise PermissionError(f"accel sandbox: {event} outside the scratch directory: {p!r}")
sys.addaudithook(_hook)
del _hook
_src = open("program.py").read()
sys.argv = ["program.py"]
exec(compile(_src, "program.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
'''
"""Runs before the candidate (as `python -I -B -c BOOTSTRAP`, cwd the scratch dir): the audit hook,
then program.py. An audit hook cannot be removed from Python code once added."""


class Limits(NamedTuple):
    """One program's limits (immutable): each turns a runaway sample into one failed sample."""
    timeout_s: float = 10.0
    """Wall clock; the whole process group is killed after it (sleeping or blocked programs)."""
    cpu_s: int = 10
    """RLIMIT_CPU: busy loops."""
    memory_mb: int = 1024
    """RLIMIT_AS in MiB: runaway allocations."""
    max_procs: int = 16
    """Processes beyond the user's current count (RLIMIT_NPROC): fork bombs."""
    file_mb: int = 16
    """RLIMIT_FSIZE in MiB: the largest file it may write."""


@dataclass
class Outcome:
    """What one program did: ``status`` is passed (exit 0), failed (non-zero exit) or timeout."""
    status: str
    returncode: int | None
    seconds: float
    stdout: str = ""
    stderr: str = ""
    isolation: list[str] = field(default_factory=list)
    """The layers that were active: netns, nobody, audit-hook, rlimits."""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def _user_processes(uid: int) -> int:
    """How many processes `uid` runs now (RLIMIT_NPROC counts them all, not only the sandbox's)."""
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


@lru_cache(maxsize=1)
def network_namespace() -> tuple[str, ...] | None:
    """The `unshare` prefix that gives a program an empty network namespace here, or None where the
    system does not permit one (no binary, no user namespaces, seccomp): checked once, by running it."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return None
    for prefix in ((exe, "-n"),) if os.geteuid() == 0 else ((exe, "-rn"),):
        try:
            r = subprocess.run([*prefix, runner()[0], "-I", "-c", "import socket; print(len(socket.if_nameindex()))"],
                               capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0 and r.stdout.strip() in ("0", "1"):  # at most a loopback that is down
            return prefix
    return None


def _drop_to_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


@lru_cache(maxsize=1)
def runner() -> tuple[str, bool]:
    """(interpreter, run as nobody): as root, the first of this interpreter's base executable and the
    system's python3 that ``nobody`` can start (a pyenv/uv interpreter under /root is not readable by
    it), else this interpreter as root (then RLIMIT_NPROC does not bind: no fork-bomb containment)."""
    base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    if os.geteuid() != 0:
        return base, False
    for exe in dict.fromkeys([base, shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")]):
        if exe is None:
            continue
        try:
            r = subprocess.run([exe, "-I", "-c", "pass"], cwd="/", capture_output=True, timeout=20,
                               preexec_fn=_drop_to_nobody)
        except (OSError, subprocess.SubprocessError):
            continue
        if r.returncode == 0:
            return exe, True
    return base, False


def _preexec(limits: Limits, as_nobody: bool, nproc: int, via_unshare: bool):
    def setup():
        mem = limits.memory_mb * 2 ** 20
        for res, value in ((resource.RLIMIT_CPU, limits.cpu_s), (resource.RLIMIT_AS, mem),
                           (resource.RLIMIT_FSIZE, limits.file_mb * 2 ** 20), (resource.RLIMIT_CORE, 0),
                           (resource.RLIMIT_NPROC, nproc)):
            resource.setrlimit(res, (value, value))
        if as_nobody:
            if via_unshare:  # `unshare -G -S` switches after making the namespace (that needs root)
                os.setgroups([])
            else:
                _drop_to_nobody()
    return setup


def run_program(source: str, limits: Limits | None = None) -> Outcome:
    """Runs the Python program `source` in the sandbox; never raises for what the program does."""
    limits = limits or Limits()
    scratch = tempfile.mkdtemp(prefix="accel-sandbox-")
    interpreter, as_nobody = runner()
    layers = ["rlimits", "audit-hook"]
    try:
        with open(os.path.join(scratch, "program.py"), "w") as f:
            f.write(source)
        if as_nobody:
            os.chown(scratch, NOBODY, NOBODY)
            os.chown(os.path.join(scratch, "program.py"), NOBODY, NOBODY)
            layers.append("nobody")
        netns = network_namespace()
        if netns:
            layers.append("netns")
        nproc = _user_processes(NOBODY if as_nobody else os.getuid()) + limits.max_procs
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": scratch, "TMPDIR": scratch}
        prefix = [*netns, "-G", str(NOBODY), "-S", str(NOBODY)] if netns and as_nobody else list(netns or ())
        cmd = [*prefix, interpreter, "-I", "-B", "-c", BOOTSTRAP]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace", start_new_session=True,
                                preexec_fn=_preexec(limits, as_nobody, nproc, bool(netns)))
        try:
            out, err = proc.communicate(timeout=limits.timeout_s)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            status = "timeout"
        finally:
            _kill_group(proc.pid)  # leftovers (a forked child that outlived its parent)
        return Outcome(status, proc.returncode, time.perf_counter() - start, out[-4000:], err[-4000:], layers)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
