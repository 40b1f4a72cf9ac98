"""The errors a user can act on, and the exit codes the entry points give them.

    0    the run finished
    2    InputError: bad input (config, data, checkpoint, run directory), found before any work;
         also OutputError: an output that cannot be written (disk full, read-only, a path that is
         a file), the previous file left as it was
    3    TrainingDiverged (nan_guard.py): every member's loss or parameters stopped being finite
    4    a gradient check failed (experiments/gradcheck.py)
    130  interrupted (Ctrl-C); a final checkpoint is saved when checkpointing is on

Anything else is a bug, and ends with its traceback.
"""

EXIT_OK, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_GRADCHECK_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 4, 130


class InputError(ValueError):
    """Bad input, found by deltaprop's own checks before any work; the message names the key,
    the value, the file or the shapes at fault."""


class ConfigError(InputError):
    """A config value that composes but cannot be run with (names the key and the value)."""


class OutputError(InputError):
    """An output that cannot be written (disk full, read-only file system, no permission, a path
    that is a file or under one): one line naming the path and the cause. Whatever the path held
    before is left as it was (deltaprop.io.files writes through a temporary file and a rename)."""


class TrainingDiverged(RuntimeError):
    """The loss or a parameter stopped being finite; the message names the epoch and the layer
    (nan_guard.py finds them)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says what was saved and how to resume."""
