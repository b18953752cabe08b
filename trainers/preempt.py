"""One checkpoint-and-exit path for every long loop: SIGTERM/SIGUSR1 -> finish the unit in hand,
keep it, exit 75.

SLURM (and a person pressing Ctrl-\\ or sending `kill`) asks a job to stop with SIGTERM, or
SIGUSR1 before its time limit; the sbatch script requeues a job that exits 75 (EX_TEMPFAIL).
Training acts on the flag at its next step boundary (`accel.trainers.trainer`); data generators
(oracle labels, trajectories, self-distillation, joint-sampler states) and τ calibration call
`StopGuard.check()` between their resumable units, so what they finished is on disk and the same
command resumes after it. Without this, the default SIGTERM action killed them with 143 and no
message.
"""
from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path

REQUEUE_EXIT_CODE = 75
"""Exit status meaning "preempted, progress saved, requeue me" (EX_TEMPFAIL)."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Preempted(SystemExit):
    """Raised once progress is saved after a stop signal; uncaught, the process exits with 75."""

    def __init__(self, checkpoint: Path | None = None):
        super().__init__(REQUEUE_EXIT_CODE)
        self.checkpoint = checkpoint


class StopSignals:
    """Records SIGTERM/SIGUSR1 instead of dying; the owner acts on `received` at a safe point."""

    def __init__(self):
        self.received: int | None = None
        self._old = {}

    def install(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        self.received = signum

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


class StopGuard:
    """The handle a long loop polls: `check(kept)` raises `Preempted` once a stop signal arrived."""

    def __init__(self, what: str, signals: StopSignals, run_dir: Path | None):
        self.what, self.signals, self.run_dir = what, signals, run_dir
        self.kept = ""
        """What the last `check` said was safe: the Ctrl-C message repeats it."""

    @property
    def requested(self) -> bool:
        return self.signals.received is not None

    def check(self, kept: str = "") -> None:
        """Call between resumable units; `kept` says what is safe on disk (e.g. "3 of 12 shards in DIR")."""
        self.kept = kept or self.kept
        if self.signals.received is None:
            return
        name = signal.Signals(self.signals.received).name
        if self.run_dir is not None:
            with contextlib.suppress(OSError):
                (self.run_dir / "preempted.json").write_text(json.dumps({"during": self.what, "signal": name}))
        kept = f": kept {kept}" if kept else ""
        print(f"[accel] stopped by {name} during {self.what}{kept}; exiting {REQUEUE_EXIT_CODE} so the job is "
              "requeued (run the same command again to resume)", file=sys.stderr, flush=True)
        raise Preempted()


_active: list[StopGuard] = []


@contextlib.contextmanager
def stop_guard(what: str, run_dir: str | Path | None = None):
    """Catch stop signals for the duration of a long loop (nested guards share the outer one's flag).

    A signal that arrives during the last unit still ends the process (75) when the block exits,
    rather than being forgotten when the default handler comes back."""
    outer = _active[-1] if _active else None
    signals = outer.signals if outer else StopSignals().install()
    guard = StopGuard(what, signals, Path(run_dir) if run_dir else (outer.run_dir if outer else None))
    _active.append(guard)
    try:
        yield guard
        # a signal during the last unit: the work is complete and saved, but the job must still stop
        guard.check("all of it (it had just finished)")
    except KeyboardInterrupt as e:  # Ctrl-C stops at once; say what survived, once
        if not getattr(e, "accel_told", False):
            kept = f": kept {guard.kept}" if guard.kept else ""
            print(f"[accel] interrupted during {guard.what}{kept}; run the same command again to resume",
                  file=sys.stderr, flush=True)
            e.accel_told = True
        raise
    finally:
        _active.pop()
        if outer is None:
            signals.restore()


def poll(kept: str = "") -> None:
    """`check(kept)` on the innermost active stop guard; a no-op outside one (library use, tests).

    For loops deep inside a step (τ calibration, final evaluation) that should not take a guard
    argument through every call."""
    if _active:
        _active[-1].check(kept)
