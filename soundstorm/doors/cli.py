"""The `soundstorm` command line: a thin door onto the library.

Each command parses its flags, calls one library function and prints. Errors of
the `SoundstormError` family (and click's usage errors) cross one boundary,
`_Boundary.main`, that turns them into one line on stderr and a non-zero exit;
a traceback is shown only with `--debug` or SOUNDSTORM_DEBUG=1.

torch and transformers are imported inside the commands that need them, never
at module import, so `soundstorm --help` answers at once.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from soundstorm import __version__
from soundstorm.base.errors import SoundstormError
from soundstorm.doors.commands import checkpoints, measure, render, serve, voices

_debug = os.environ.get("SOUNDSTORM_DEBUG", "") not in ("", "0")


def _fail_line(message: str, code: int) -> int:
    # Plain print, not rich: rich would wrap a long message over several lines.
    print(f"error: {message}", file=sys.stderr)
    return code


class _Boundary(TyperGroup):
    """The one place where errors become a message and an exit code."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        global _debug
        argv = list(sys.argv[1:] if args is None else args)
        _debug = _debug or "--debug" in argv
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else 0
            if code == 130:  # typer turns Ctrl-C into a silent Exit(130) and returns its code
                code = _fail_line("interrupted", 130)
        except click.exceptions.NoArgsIsHelpError as exc:
            # click built the help when it raised: typer's rich help printed itself then (and left
            # the message empty); plain click's help is the message. Asking for it again printed it twice.
            if exc.format_message().strip():
                print(exc.format_message())
            code = 0
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            code = _fail_line(exc.format_message() + hint, exc.exit_code)
        except click.ClickException as exc:
            code = _fail_line(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt):
            code = _fail_line("interrupted", 130)
        except SoundstormError as exc:
            if _debug:
                raise
            code = _fail_line(str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: a bug, said plainly
            if _debug:
                raise
            code = _fail_line(
                f"internal error ({type(exc).__name__}: {exc}); rerun with --debug for a traceback", 70
            )
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=_Boundary,
    help="Text and two-speaker dialogue to speech, fast, with SoundStorm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(checkpoints.app, name="checkpoints")
app.add_typer(voices.app, name="voices")


def _version(value: bool) -> None:
    if value:
        print(f"soundstorm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Text and two-speaker dialogue to speech, fast, with SoundStorm."""


app.command()(render.say)
app.command()(render.dialogue)
app.command()(measure.bench)
app.command()(serve.serve)
app.command("eval")(measure.eval_command)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
