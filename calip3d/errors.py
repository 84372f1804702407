"""User-facing errors: the commands print these as one clear message, without a traceback."""

from __future__ import annotations

import os
import sys
from typing import Callable


class CalipError(Exception):
    """A mistake in the user's input or environment (missing file, bad flag value, no weights offline)."""


def user_message(err: BaseException) -> str:
    """The message of `err`; for an error re-raised from a DataLoader worker, without the worker's traceback."""
    text = str(err)
    if "Original Traceback" in text:
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[-1] if last.startswith(("calip3d.errors.CalipError", "CalipError")) else last
    return text


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a command's `main`, turning a `CalipError` into `error: ...` on stderr and exit status 2."""
    try:
        code = main()
    except CalipError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    except BrokenPipeError:  # output piped into a reader that stopped early (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    raise SystemExit(code or 0)


def check_at_least(value: int | float | None, least: int, what: str) -> None:
    """`CalipError("<what> must be >= <least>, got <value>")` unless `value` is None or at least `least`."""
    if value is not None and value < least:
        raise CalipError(f"{what} must be >= {least}, got {value}")
