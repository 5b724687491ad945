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


# what gloo and NCCL say when a peer rank's process or connection went away
PEER_LOST = ("closed by peer", "reset by peer", "Broken pipe", "remote process exited", "communicator was aborted")


def lost_peer(err: RuntimeError) -> bool:
    """Whether `err` is torch.distributed's report that a peer rank went away (gloo and NCCL raise
    plain RuntimeErrors for it). The launcher says which rank ended and how, so a survivor prints
    one line; any other error of a collective (a bug) keeps its traceback.

    >>> lost_peer(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:51928")), lost_peer(RuntimeError())
    (True, False)
    """
    from torch.distributed import DistNetworkError

    return isinstance(err, DistNetworkError) or any(sign in str(err) for sign in PEER_LOST)


def main() -> None:
    sys.argv[1:] = train.ray_address_after_flag(sys.argv[1:])  # `rftkit train --ray [ADDRESS]`
    try:
        app()
    except RftkitError as err:
        console.quiet = False  # a data-parallel rank other than 0 is quiet, but not about its errors
        console.print(f"[red]error[/]: {rank_prefix()}{escape(str(err))}", highlight=False)
        sys.exit(2)
    except RuntimeError as err:
        if not rank_prefix() or not lost_peer(err):
            raise
        from rftkit.scale.launch import LOST_PEER_EXIT

        console.quiet = False
        first = (str(err).splitlines() or [type(err).__name__])[0][-300:]
        console.print(f"[red]error[/]: {rank_prefix()}another rank went away during a collective: {escape(first)}",
                      highlight=False)
        sys.exit(LOST_PEER_EXIT)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)
