"""The `mirkit` command line: one Click group, one module per subcommand."""

from __future__ import annotations

from pathlib import Path

import click

from mirkit import __version__, log
from mirkit.cli.doctor import doctor
from mirkit.cli.eval import evaluate, runs
from mirkit.cli.index import index
from mirkit.cli.recommend import recommend, similar
from mirkit.cli.serve import serve
from mirkit.cli.shards import shards
from mirkit.cli.synth import synth
from mirkit.cli.train import train
from mirkit.config import build_default_map, read_toml
from mirkit.errors import MirkitError


class Main(click.Group):
    """The command group, and the one place where a problem the user can fix
    (`MirkitError`) becomes its message and exit status 1 instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MirkitError as err:
            raise click.ClickException(str(err)) from err


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirkit")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file whose [sections] give defaults for subcommands (flags win).",
)
@click.option("-v", "--verbose", count=True, help="More output (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: int, quiet: bool) -> None:
    """mirkit: train multimodal two-tower music recommenders.

    Typical flow: synth (or your own data) -> shards build -> train -> index -> eval ->
    recommend. Every command accepts --help.
    """
    log.configure(-1 if quiet else verbose)
    if config_path is not None:
        table = read_toml(config_path)
        ctx.default_map = build_default_map(main, table, str(config_path))


main.add_command(synth)
main.add_command(shards)
main.add_command(train)
main.add_command(index)
main.add_command(recommend)
main.add_command(similar)
main.add_command(serve)
main.add_command(evaluate)
main.add_command(runs)
main.add_command(doctor)
