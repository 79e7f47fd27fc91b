"""Ctrl-C for the command line: it always ends the command, with one line.

Python's own SIGINT handler raises `KeyboardInterrupt` wherever the main thread is,
and during start-up that is often inside a C extension being imported or a JAX
backend being started. There the exception is turned into an `ImportError`,
printed and dropped by C code, or aborts the process from C++ (measured on this
machine: a traceback from inside numpy's import at 0.1 s, an abort at 0.12 s, a
run that trained on). `Interrupts` instead *records* a SIGINT while the command
starts up and acts on it at safe points:

- `check()` raises `KeyboardInterrupt` at the end of each start-up phase;
- `stop_training()` is a `fit` callback that turns a recorded interrupt into the
  loop's own stop (`Run.stop_signal`), as `flowlab.training.Signals` does for one
  that arrives during training;
- `immediate()` ends start-up: from then on SIGINT raises at once, as usual.
"""

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["Interrupts"]


class Interrupts:
    """A SIGINT handler that records during start-up and raises afterwards."""

    def __init__(self):
        self.received: int | None = None
        self.deferred = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Handle SIGINT in this process (main thread only) until the block ends.

        The state starts afresh, and the previous handlers come back at the end
        (`flowlab.cli.main` may be called more than once in one process).
        """
        self.received, self.deferred = None, True
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handler)
        previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            sys.unraisablehook = previous_hook

    def _handler(self, signum, frame) -> None:
        self.received = signum
        if not self.deferred:
            raise KeyboardInterrupt

    @staticmethod
    def _unraisable(unraisable) -> None:
        # An interrupt raised inside a garbage-collector callback cannot propagate;
        # it was recorded and `check` raises it again, so the report is noise.
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            sys.__unraisablehook__(unraisable)

    def check(self) -> None:
        """Raise `KeyboardInterrupt` if a SIGINT was recorded."""
        if self.received is not None:
            raise KeyboardInterrupt

    def immediate(self) -> None:
        """End start-up: act on a recorded SIGINT now, and raise on the next."""
        self.deferred = False
        self.check()

    def stop_training(self):
        """A `fit` callback: stop after the first call if a SIGINT was recorded.

        When training ends, SIGINT raises at once again (for the evaluation).
        """
        from .training import Callback

        interrupts = self

        class StopIfInterrupted(Callback):
            def on_call(self, run, metrics) -> None:
                if interrupts.received is not None and run.stop_signal is None:
                    run.stop_signal = interrupts.received

            def on_end(self, run) -> None:
                interrupts.deferred = False

        return StopIfInterrupted()
