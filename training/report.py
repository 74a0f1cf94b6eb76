"""Printing metrics as tables (rich) for the command line."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

COLUMNS = ("micro_p", "micro_r", "micro_f1", "macro_p", "macro_r", "macro_f1")


def metrics_table(title: str, rows: dict[str, dict]) -> Table:
    """rows: name → one `fmlc.metrics.evaluate` result."""
    table = Table(title=title)
    table.add_column("run")
    table.add_column("labels")
    for col in COLUMNS:
        table.add_column(col.replace("_", " "), justify="right")
    table.add_column("P@1", justify="right")
    for name, result in rows.items():
        for block in ("all", "tail"):
            if block not in result:
                continue
            b = result[block]
            table.add_row(name if block == "all" else "", f"{block} ({b['labels']})",
                          *(f"{100 * b[c]:.2f}" for c in COLUMNS),
                          f"{100 * result['p@1']:.2f}" if block == "all" else "")
    return table


def print_split_metrics(metrics: dict, split: str = "test", console: Console | None = None) -> None:
    console = console or Console()
    if split not in metrics:
        return
    console.print(metrics_table(f"{split} metrics (%), macro over all labels; absent labels count 0",
                                {"threshold 0.5": metrics[split]["threshold_0.5"],
                                 "tuned thresholds": metrics[split]["tuned"]}))
