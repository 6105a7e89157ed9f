"""An evaluation report: one row per system (model, or model with patches), written as JSON,
a Markdown table and a PNG bar chart per measure."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Report", "SystemResult"]


@dataclass
class SystemResult:
    label: str
    model: str
    patches: list[str]
    metrics: dict[str, float]
    # A few generations per system, so a reader can see what the numbers count.
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Report:
    suite: str
    scorer: str | None
    primary: str
    higher_is_better: bool
    settings: dict[str, Any]
    systems: list[SystemResult]

    def summary(self) -> dict[str, Any]:
        """The measures per system label, plus which measure is primary."""
        return {
            "primary": self.primary,
            "scorer": self.scorer,
            "systems": {s.label: s.metrics for s in self.systems},
        }

    def metric(self, label: str, name: str | None = None) -> float:
        for system in self.systems:
            if system.label == label:
                return system.metrics[name or self.primary]
        raise KeyError(f"no system labelled {label!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def metric_names(self) -> list[str]:
        names: list[str] = [self.primary]
        for system in self.systems:
            names += [n for n in system.metrics if n not in names and n != "tokens"]
        return names

    def markdown(self) -> str:
        names = self.metric_names()
        better = "higher" if self.higher_is_better else "lower"
        lines = [
            f"# {self.suite} evaluation",
            "",
            f"Primary measure: `{self.primary}` ({better} is better). "
            f"Scorer: {self.scorer or 'the model itself (log-probabilities)'}.",
            "",
            "| system | " + " | ".join(names) + " |",
            "| --- | " + " | ".join("---:" for _ in names) + " |",
        ]
        for system in self.systems:
            cells = [f"{system.metrics[n]:.4g}" if n in system.metrics else "" for n in names]
            lines.append(f"| {system.label} | " + " | ".join(cells) + " |")
        settings = ", ".join(f"{k}={v}" for k, v in sorted(self.settings.items()))
        lines += ["", f"Settings: {settings}.", ""]
        return "\n".join(lines)

    def write(self, directory: Path) -> list[Path]:
        """report.json, report.md and one PNG per measure into an existing `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        written = [directory / "report.json", directory / "report.md"]
        written[0].write_text(
            json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        written[1].write_text(self.markdown(), encoding="utf-8")
        written += self._plots(directory)
        return written

    def _plots(self, directory: Path) -> list[Path]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot

        paths: list[Path] = []
        labels = [s.label for s in self.systems]
        for name in self.metric_names():
            values = [s.metrics.get(name, float("nan")) for s in self.systems]
            figure, axes = pyplot.subplots(figsize=(max(4.0, 1.2 * len(labels)), 3.2))
            axes.bar(range(len(labels)), values, color="#4a7fb5")
            axes.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
            axes.set_title(f"{self.suite}: {name}")
            figure.tight_layout()
            path = directory / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_')}.png"
            figure.savefig(path, dpi=100)
            pyplot.close(figure)
            paths.append(path)
        return paths
