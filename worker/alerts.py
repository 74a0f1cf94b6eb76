"""Alert rules: predicted labels → alert topics.

A rules file (YAML, or JSON which YAML also reads) looks like

    rules:
      - name: violent-collection
        label: 暴力催收          # fires when this label is predicted …
        min_score: 0.6          # … with at least this score (default: the model's own threshold)
        topic: fmlc.alerts.collection
        severity: high
      - name: lending-abuse
        all_of: [利率争议, 砍头息]  # every one of these, each at min_score
        topic: fmlc.alerts.lending
        severity: high
      - name: privacy
        any_of: [隐私泄露, 通讯录爆破]
        topic: fmlc.alerts.privacy
        severity: high

Each rule that fires publishes one alert keyed by the complaint id. Rules that name labels the
loaded model does not have are reported at load (and again after a model reload) and then simply
never fire: a rules file shared across model generations must not crash a worker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from worker.messages import LabelOut, Severity

log = logging.getLogger(__name__)


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    label: str | None = None
    any_of: tuple[str, ...] = ()
    all_of: tuple[str, ...] = ()
    min_score: float = Field(0.0, ge=0.0, le=1.0)
    topic: str = Field(min_length=1)
    severity: Severity = "medium"

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        given = sum(bool(x) for x in (self.label, self.any_of, self.all_of))
        if given != 1:
            raise ValueError(f"rule {self.name!r}: give exactly one of label, any_of, all_of")
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        return (self.label,) if self.label else (self.any_of or self.all_of)

    def match(self, scores: dict[str, LabelOut]) -> list[LabelOut] | None:
        """The labels that make the rule fire, or None."""
        hits = [scores[name] for name in self.labels if name in scores and scores[name].score >= self.min_score]
        if self.all_of:
            return hits if len(hits) == len(self.all_of) else None
        return hits or None


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    rules: list[AlertRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> RulesFile:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate rule names: {dupes}")
        return self


@dataclass(frozen=True)
class Firing:
    rule: AlertRule
    labels: list[LabelOut]


class AlertRules:
    def __init__(self, rules: Sequence[AlertRule] = ()) -> None:
        self.rules = list(rules)

    @classmethod
    def load(cls, path: str | Path | None) -> AlertRules:
        if path is None:
            return cls()
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        # safe_load: a rules file is data; it must not be able to construct Python objects.
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        if data is None:
            return cls()
        if isinstance(data, list):  # a bare list of rules is accepted too
            data = {"rules": data}
        return cls(RulesFile.model_validate(data).rules)

    @property
    def topics(self) -> list[str]:
        return sorted({r.topic for r in self.rules})

    def check_labels(self, model_labels: Iterable[str]) -> list[str]:
        """Warn about (and return) rule labels the model does not know."""
        known = set(model_labels)
        problems = []
        for rule in self.rules:
            missing = [name for name in rule.labels if name not in known]
            if not missing:
                continue
            dead = rule.all_of != () or len(missing) == len(rule.labels)
            problems.append(f"rule {rule.name!r}: labels {missing} are not in the model"
                            + (" — the rule can never fire" if dead else ""))
        for p in problems:
            log.warning("alert rules: %s", p)
        return problems

    def evaluate(self, labels: Sequence[LabelOut]) -> list[Firing]:
        if not self.rules or not labels:
            return []
        scores = {lab.label: lab for lab in labels}
        out = []
        for rule in self.rules:
            hits = rule.match(scores)
            if hits:
                out.append(Firing(rule, hits))
        return out


__all__ = ["AlertRule", "AlertRules", "Firing", "RulesFile"]
