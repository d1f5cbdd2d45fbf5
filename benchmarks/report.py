"""The tables `make bench` prints: markdown, each with the machine's load around it, and the
issue's targets in a "target" and a "met" column."""

import os
from dataclasses import dataclass, field
from typing import Optional, Sequence


@dataclass(frozen=True)
class Check:
    target: str
    met: bool


def target_cells(checks: Sequence[Check]) -> tuple:
    """The "target" and "met" cells of a row: every target, and which of them were missed."""
    if not checks:
        return "", ""
    missed = [check.target for check in checks if not check.met]
    met = "yes" if not missed else "**no**: " + "; ".join(missed)
    return "; ".join(check.target for check in checks), met


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: list = field(default_factory=list)  # cells, the target and met cells last
    notes: list = field(default_factory=list)
    load_before: str = ""
    load_after: str = ""

    def add(self, cells: Sequence[str], checks: Optional[Sequence[Check]] = None) -> None:
        self.rows.append([*cells, *target_cells(checks or ())])

    def markdown(self) -> str:
        lines = [f"#### {self.title}", ""]
        if self.load_before:
            lines += [
                f"Load average (1, 5, 15 min) before: {self.load_before}; after: {self.load_after}",
                "",
            ]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"
