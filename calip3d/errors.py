"""User-facing errors: the commands print these as one clear message, without a traceback."""

from __future__ import annotations

import sys
from typing import Callable


class CalipError(Exception):
    """A mistake in the user's input or environment (missing file, bad flag value, no weights offline)."""


def run_cli(main: Callable[[], int | None]) -> None:
    """Run a command's `main`, turning a `CalipError` into `error: ...` on stderr and exit status 2."""
    try:
        code = main()
    except CalipError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
