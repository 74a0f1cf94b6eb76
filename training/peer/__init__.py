"""The experiment's external reference: LibMultiLabel on the experiment's own split and vectors.

`libmultilabel` runs in a venv of its own (`setup_libmultilabel.sh` creates `.peer-venv`), because
LibMultiLabel pins old torchmetrics and lightning versions that must not reach the project's. This
package therefore imports nothing beyond the standard library: the peer venv imports it too.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the folder holding the `training` package
SETUP = "training/peer/setup_libmultilabel.sh"


def peer_python() -> Path:
    """The peer venv's interpreter: FMLC_PEER_PYTHON, else .peer-venv beside the project."""
    return Path(os.environ.get("FMLC_PEER_PYTHON", ROOT / ".peer-venv" / "bin" / "python"))


def command(python: Path, *args: str) -> list[str]:
    """The command line that runs the reference with `args` in `python` (see libmultilabel.py --help)."""
    return [str(python), "-m", "training.peer.libmultilabel", *args]


def environment(**extra: str) -> dict[str, str]:
    """os.environ with the project on PYTHONPATH, so that the peer venv finds this package."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}
