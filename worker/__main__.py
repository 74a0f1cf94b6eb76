"""`python -m worker [--flag value ...]`: every non-secret setting is also a flag (--batch-size 32
for FMLC_BATCH_SIZE=32); flags override the environment. Secrets come from the environment only."""

from __future__ import annotations

import argparse
import sys

from worker.settings import SECRET_FIELDS, SettingsError, WorkerSettings, env_name, load_settings


class _RefuseSecret(argparse.Action):
    """A secret given as a flag is refused with a message that names the variable to use instead;
    argparse's own "unrecognized arguments" error would print the value back."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} is a secret and may only come from the environment "
                     f"({env_name(self.dest)})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    for name, field in WorkerSettings.model_fields.items():
        if name in SECRET_FIELDS:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name, action=_RefuseSecret, default=None,
                                metavar="VALUE", help=f"refused: set {env_name(name)} in the environment")
            continue
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="VALUE",
                            help=f"FMLC_{name.upper()} (default: {field.default!r})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(**vars(args))  # strings are parsed and validated by pydantic
    except SettingsError as exc:
        # One clear line naming the variables, no traceback (and never a value: it may be a secret).
        print(f"fmlc worker: {exc}", file=sys.stderr)
        return 2
    from worker.app import run_worker  # torch and the Kafka client load only once settings are valid

    return run_worker(settings)


if __name__ == "__main__":
    sys.exit(main())
