"""`python -m worker [--flag value ...]`: every non-secret setting is also a flag (--batch-size 32
for FMLC_BATCH_SIZE=32); flags override the environment. Secrets come from the environment only."""

from __future__ import annotations

import argparse
import sys

from worker.settings import SECRET_FIELDS, WorkerSettings, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    for name, field in WorkerSettings.model_fields.items():
        if name in SECRET_FIELDS:
            continue
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar="VALUE",
                            help=f"FMLC_{name.upper()} (default: {field.default!r})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings(**vars(args))  # strings are parsed and validated by pydantic
    from worker.app import run_worker  # torch and the Kafka client load only once settings are valid

    return run_worker(settings)


if __name__ == "__main__":
    sys.exit(main())
