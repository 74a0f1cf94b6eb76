"""The `fmlc` command: the library's own commands (predict, tokenize) and those of every package that
registers a typer app under the `fmlc.commands` entry-point group (training: synth, train, experiment,
...; worker: worker, demo). The library names none of those packages: it finds them through the group,
so that it stays usable, and testable, without them.

Heavy imports stay inside the commands so that `fmlc --help` is instant and `fmlc predict` never loads
training code."""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, TypeVar

import typer

COMMANDS_GROUP = "fmlc.commands"
HELP = "FMLC: multi-label classification of Chinese internet-finance complaints."
_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., object])


def _main(debug: Annotated[bool, typer.Option("--debug", help="show the traceback of an error")] = False) -> None:
    _state["debug"] = debug


def user_errors(command: F) -> F:
    """Errors in what the user gave (data, artifact, file, setting) end the command with their own
    one-line message on stderr and exit code 2; `fmlc --debug ...` lets the traceback through."""

    @functools.wraps(command)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return command(*args, **kwargs)
        # Data errors (training.data.DataError) and fmlc.artifact.ArtifactError are ValueErrors whose
        # message already names the file (and line and field).
        except (ValueError, FileNotFoundError) as exc:
            if _state["debug"]:
                raise
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


commands = typer.Typer()


@commands.command()
@user_errors
def predict(
    model: Annotated[Path, typer.Option(help="artifact directory")],
    texts: Annotated[list[str], typer.Argument(help="complaint texts")],
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto")] = None,
    quantize: Annotated[str | None, typer.Option(help="none | int8 (dynamic int8 quantisation, CPU only)")] = None,
) -> None:
    """Classify texts; prints one JSON object per text."""
    from fmlc.predictor import Predictor

    predictor = Predictor.load(model, device=device, quantize=quantize)
    for text, pred in zip(texts, predictor.predict(texts), strict=True):
        typer.echo(json.dumps({"text": text, **pred.to_dict(), "model_version": predictor.version},
                              ensure_ascii=False))


@commands.command()
@user_errors
def tokenize(
    model: Annotated[Path, typer.Option(help="artifact directory")],
    texts: Annotated[list[str], typer.Argument(help="texts to segment")],
) -> None:
    """Print, as JSON, the tokens the served model sees for each text (normalised, segmented with the
    model's own user dictionary, stop words out, cut at its max length), to debug segmentation."""
    from fmlc.predictor import Predictor

    predictor = Predictor.load(model, device="cpu")
    for text, tokens in zip(texts, predictor.tokenize(texts), strict=True):
        typer.echo(json.dumps({"text": text, "tokens": tokens, "model_version": predictor.version},
                              ensure_ascii=False))


def declared_in_source_tree(pyproject: Path | None = None) -> list[str]:
    """The group's entries ("module:attribute") as pyproject.toml declares them, for a source checkout
    run without installing it (or installed before the group existed). Empty where there is no
    pyproject.toml beside the package, or no TOML reader (Python 3.10: install the project instead)."""
    pyproject = pyproject or Path(__file__).resolve().parents[1] / "pyproject.toml"
    if sys.version_info >= (3, 11) and pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        return list(project.get("entry-points", {}).get(COMMANDS_GROUP, {}).values())
    return []


def _load(spec: str) -> typer.Typer:
    module, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module), attribute)


def command_apps() -> list[typer.Typer]:
    """The typer apps registered under the group: the installed entry points, or, where none are
    installed, those pyproject.toml declares."""
    installed = sorted(entry_points(group=COMMANDS_GROUP), key=lambda ep: ep.name)
    if installed:
        return [ep.load() for ep in installed]
    return [_load(spec) for spec in declared_in_source_tree()]


def build_app(apps: Iterable[typer.Typer] | None = None) -> typer.Typer:
    """The `fmlc` command: the library's commands plus those of `apps` (default: command_apps())."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, help=HELP)
    app.callback()(_main)
    app.add_typer(commands)
    for sub in command_apps() if apps is None else apps:
        app.add_typer(sub)
    return app


def main() -> None:
    build_app()(prog_name="fmlc", args=sys.argv[1:])


if __name__ == "__main__":
    main()
