"""Entry point of the ``archzoo`` command (also ``python -m archzoo``).

Every module in this package except ``main`` and ``common`` is a command: it defines
``register(subparsers)``, which adds its parser and sets ``func=run`` on it.

No command ends in a Python traceback: bad input (an option out of range, a missing or broken
file, an unusable folder) is reported as one paragraph, ``archzoo CMD: error: ...``, with exit
status 2; anything else is an internal error, reported as such (exit 1) with a hint to rerun with
``--debug`` (or ``ARCHZOO_DEBUG=1``), which shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import warnings

from .. import __version__
from ..validate import plain_text_pictures, shown

USER_ERROR, INTERNAL_ERROR = 2, 1
# what a user's input or machine can cause: reported as a message, not a traceback
USER_ERRORS = (ValueError, KeyError, OSError)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one paragraph (the message and where to read more), not the
    whole usage block."""

    def error(self, message: str):
        self.exit(USER_ERROR, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="archzoo", description="The zoo of classic vision networks, built from one vocabulary of blocks.")
    parser.add_argument("--version", action="version", version=f"archzoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks of errors (for developers)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import __path__ as cli_path

    for info in sorted(pkgutil.iter_modules(cli_path), key=lambda i: i.name):
        if info.name in ("main", "common"):
            continue
        importlib.import_module(f"{__package__}.{info.name}").register(sub)
    return parser


def _message(e: BaseException) -> str:
    """The user-facing text of an exception: its message (a KeyError's without the quotes), and
    for an error re-raised from a DataLoader worker only the original's last line."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if "Traceback (most recent call last)" in text:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        text = lines[-1] if lines else text
    text = "\n".join(ln for ln in shown(text).strip().splitlines() if ln.strip())  # one paragraph
    return text or type(e).__name__


def _is_user_error(e: BaseException) -> bool:
    """Errors about the input: validation errors (ValueError, of which archzoo's UserError), missing
    or unusable files (OSError), unknown names (a KeyError that carries a sentence, as the registry
    raises; a bare ``KeyError('key')`` is a bug)."""
    if isinstance(e, UnicodeError):  # text archzoo failed to make printable: a bug
        return False
    if isinstance(e, KeyError):
        return bool(e.args) and isinstance(e.args[0], str) and " " in e.args[0]
    return isinstance(e, USER_ERRORS)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line, ``archzoo: warning: ...``, without the source line."""
    print(f"archzoo: warning: {shown(message)}", file=file or sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted after the command too
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else USER_ERROR
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    debug = debug or os.environ.get("ARCHZOO_DEBUG", "") not in ("", "0")
    prog = f"archzoo {args.command}"
    errors = getattr(sys.stdout, "errors", None)
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        try:
            # a safety net: text that is not valid Unicode (a file name that is not UTF-8) is
            # printed with \x escapes instead of failing, should any path print it unescaped
            if errors == "strict" and hasattr(sys.stdout, "reconfigure"):
                sys.stdout.reconfigure(errors="backslashreplace")
            with plain_text_pictures():
                return args.func(args) or 0
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # e.g. `archzoo models | head`
            return 0
        except Exception as e:
            if debug:
                raise
            import torch

            if isinstance(e, torch.OutOfMemoryError):
                print(f"{prog}: error: out of memory on the device; lower --batch-size (or use a smaller "
                      "--image-size or model)", file=sys.stderr)
                return USER_ERROR
            if _is_user_error(e):
                print(f"{prog}: error: {_message(e)}", file=sys.stderr)
                return USER_ERROR
            print(f"{prog}: internal error ({type(e).__name__}): {_message(e)}. This is a bug in archzoo: "
                  "rerun with --debug (archzoo --debug ...) for the traceback, and report it.", file=sys.stderr)
            return INTERNAL_ERROR
        finally:
            if errors == "strict" and hasattr(sys.stdout, "reconfigure"):
                sys.stdout.reconfigure(errors=errors)


if __name__ == "__main__":
    sys.exit(main())
