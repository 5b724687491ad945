"""The `rftkit` command.

Every command exits 0 on success, 2 with a one-line reason (no traceback) on a problem the
user can fix (`RftkitError`, bad arguments), and keeps the traceback for anything else,
which is a bug. Each command group lives in its own module; imports of heavy libraries
(torch, transformers) happen inside commands, so `rftkit --help` is instant.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from rftkit.cli import bench, config, data, evaluate, feedback, graders, model, rm, serve, train
from rftkit.errors import RftkitError
from rftkit.monitor.console import console

app = typer.Typer(
    help="Reinforcement fine-tuning for language models, on your own hardware.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("train")(train.train)
app.command("demo")(train.demo)
app.command("eval")(evaluate.evaluate)
app.command("export")(evaluate.export)
app.command("report")(evaluate.report)
app.add_typer(data.app, name="data")
app.add_typer(model.app, name="model")
app.add_typer(config.app, name="config")
app.command("grade")(graders.grade)
app.add_typer(graders.app, name="graders")
app.command("serve")(serve.serve)
app.add_typer(serve.keys_app, name="keys")
app.add_typer(rm.app, name="rm")
app.add_typer(feedback.app, name="feedback")
app.command("bench")(bench.bench)


def rank_prefix() -> str:
    """"rank N: " in one of several data-parallel ranks, so that a failure says which."""
    world = os.environ.get("WORLD_SIZE", "1")
    return f"rank {os.environ.get('RANK', '0')}: " if world.isdigit() and int(world) > 1 else ""


def lost_peer(err: RuntimeError) -> bool:
    """Whether `err` is torch.distributed's report that a collective failed (gloo and NCCL raise
    plain RuntimeErrors when a peer rank's connection closes): the launcher says which rank
    ended and how, so the survivors print one line, not a traceback."""
    import traceback

    from torch.distributed import DistError

    frames = traceback.extract_tb(err.__traceback__)
    return isinstance(err, DistError) or any(f"torch{os.sep}distributed" in frame.filename for frame in frames) \
        or any(name in str(err) for name in ("gloo", "NCCL"))


def main() -> None:
    try:
        app()
    except RftkitError as err:
        console.quiet = False  # a data-parallel rank other than 0 is quiet, but not about its errors
        console.print(f"[red]error[/]: {rank_prefix()}{escape(str(err))}", highlight=False)
        sys.exit(2)
    except RuntimeError as err:
        if not rank_prefix() or not lost_peer(err):
            raise
        console.quiet = False
        console.print(f"[red]error[/]: {rank_prefix()}a collective with the other ranks failed, most likely because "
                      f"one of them ended: {escape(str(err).splitlines()[0][-300:])}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
