"""The CPU study's verdicts: its claims as data rows (:data:`CLAIMS`) judged by one rule (:func:`claims`), the
per-arm table (:func:`study_table`) and the reading 07 shows (:func:`reading`), every number taken from the study's
rows (:func:`fgssl_lib.study.read_study`) and its calibration record."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from fgssl_lib.study import COLUMNS, LOCALISED_METHODS, committed_localiser, paper_start, study_arms
from fgssl_lib.train.localiser import DEFAULT_LOCALISER, SELF
from fgssl_lib.viz.study import SCRATCH, StudyArm, arm_label


def budget_line(budget: dict[str, Any]) -> str:
    """A :func:`budget` as one line for a reader: images, epochs, size, batch, backbone, precision, learning rates."""
    rates = ", ".join(f"{method} {lr:g}" for method, lr in budget["lr"].items())
    return (f"{budget['num_images']:,} training images x {budget['epochs']} epochs at {budget['image_size']} px, "
            f"batch {budget['batch_size']}, {budget['backbone']}, {budget['precision']}; learning rate {rates}")


def calibration_table(record: dict[str, Any]) -> pd.DataFrame:
    """The three properties of a :func:`calibrate` record as a table: ``value``, ``target``, ``met`` and the per-seed
    values, indexed by property."""
    what = {"learnable": "supervised_oracle mean kNN mixed_rand (%), at least", "biased": "BYOL mean BG-Gap (points), "
            "at least", "stable": "std of BYOL's kNN mixed_rand over seeds (points), at most"}
    return pd.DataFrame([{"property": name, "measures": what[name], "value": record[name]["value"],
                          "target": record[name]["target"], "met": record[name]["met"],
                          "seeds": ", ".join(f"{v:.1f}" for v in record[name].get("seeds", []))}
                         for name in what]).set_index("property")


def to_results(rows: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """``{arm label: {metric: [value per seed]}}`` in :func:`study_arms` order (:func:`arm_label`, with the localiser
    of every arm whose views use one), the input of
    :func:`fgssl_lib.viz.results_table` and the charts (mean ± std over seeds)."""
    metrics = [c for c in COLUMNS if c not in ("method", "init", "localiser", "seed")]
    return {arm_label(*arm): {c: rows.loc[_of_arm(rows, arm), c].astype(float).tolist() for c in metrics}
            for arm in present_arms(rows)}


def present_arms(rows: pd.DataFrame) -> list[StudyArm]:
    """The arms that have rows, in :func:`study_arms` order (others after them, as they come)."""
    present = list(dict.fromkeys(zip(rows["method"], rows["init"], rows["localiser"])))
    known = [arm for arm in study_arms() if arm in present]
    return known + [arm for arm in present if arm not in known]


def _of_arm(rows: pd.DataFrame, arm: StudyArm) -> pd.Series:
    """The rows of ``arm``."""
    method, init, localiser = arm
    return (rows["method"] == method) & (rows["init"] == init) & (rows["localiser"] == localiser)


@dataclass(frozen=True)
class Claim:
    """One question of the study as data: ``method`` against ``against`` started alike (or, with ``paper_start``,
    ``method`` from its paper's start against ``method`` from scratch), judged by :func:`claims`' one rule.

    ``higher``/``lower``: the metrics on which ``method``'s mean must be above/below the other's by more than the larger
    standard deviation over seeds; ``at_least``: ``(metric, value)`` floors of ``method``'s mean (no other arm);
    ``near_chance``: a metric whose mean must lie within two standard deviations (at least 5 points) of chance;
    ``not_below``: the metrics on which the other's mean must not be above ``method``'s by more than the larger
    standard deviation ("matches or beats"). ``localiser`` / ``against_localiser``: the arms' localisers (``None``:
    their :func:`committed_localiser`).
    """

    number: str
    question: str
    method: str
    against: str | None = None
    higher: tuple[str, ...] = ()
    lower: tuple[str, ...] = ()
    at_least: tuple[tuple[str, float], ...] = ()
    near_chance: str | None = None
    paper_start: bool = False
    not_below: tuple[str, ...] = ()
    localiser: str | None = None
    against_localiser: str | None = None

    def label(self, method: str, init: str, localiser: str | None) -> str:
        """The :func:`arm_label` of ``method`` from ``init`` with ``localiser`` (or its committed one)."""
        return arm_label(method, init, localiser or committed_localiser(method))

    def pairs(self, inits: Sequence[str]) -> list[tuple[str, str, str | None]]:
        """``(init column, arm, other arm or None)`` for each start the claim is asked at."""
        if self.paper_start:
            start = paper_start(self.method)
            return [(f"{start} vs {SCRATCH}", self.label(self.method, start, self.localiser),
                     self.label(self.method, SCRATCH, self.localiser))]
        return [(init, self.label(self.method, init, self.localiser),
                 self.against and self.label(self.against, init, self.against_localiser)) for init in inits]


CLAIMS: tuple[Claim, ...] = (
    Claim("(i)", "byol background-biased (BG-Gap >= 10)?", "byol", at_least=(("bg_gap", 10.0),)),
    Claim("(i)", "mocov2 background-biased (BG-Gap >= 10)?", "mocov2", at_least=(("bg_gap", 10.0),)),
    *(Claim("(ii)", f"{fix} shrinks the BG-Gap and raises mixed_rand kNN over {ref}?", fix, ref,
            higher=("knn_mixed_rand",), lower=("bg_gap",))
      for fix, ref in (("byol_dilo", "byol"), ("byol_ss", "byol"), ("cvsa", "byol"), ("mocov2_dilo", "mocov2"))),
    Claim("(iii)", "SS+Align beats SS alone (kNN mixed_rand)?", "cvsa", "byol_ss", higher=("knn_mixed_rand",)),
    Claim("(iv)", "LCR raises retrieval rank-1 over MoCo v2?", "lcr", "mocov2", higher=("retrieval_rank1",)),
    Claim("(v)", "DualPooling collapses (retrieval rank-1 near chance, below LCR)?", "lcr_dual_pooling", "lcr",
          lower=("retrieval_rank1",), near_chance="retrieval_rank1"),
    Claim("(vi)", "LCR's branch map finds the bird once LCR starts as its paper does (MaxBoxAcc)?", "lcr",
          higher=("maxboxacc",), paper_start=True),
    Claim("(vii)", "labels learn the habitat: supervised below its ceiling (kNN mixed_rand)?", "supervised",
          "supervised_oracle", lower=("knn_mixed_rand",)),
    *(Claim("(viii)", f"with the label-free detector, {fix} shrinks the BG-Gap and raises mixed_rand kNN over {ref}?",
            fix, ref, higher=("knn_mixed_rand",), lower=("bg_gap",), localiser=DEFAULT_LOCALISER)
      for fix, ref in (("byol_dilo", "byol"), ("byol_ss", "byol"), ("cvsa", "byol"))),
    *(Claim("(ix)", f"{method}: self-saliency matches or beats the detector (kNN mixed_rand)?", method, method,
            not_below=("knn_mixed_rand",), localiser=SELF, against_localiser=DEFAULT_LOCALISER)
      for method in LOCALISED_METHODS),
)
"""The study's claims, in the order the book lists them: (i)-(vii) written before its first run, (viii) and (ix)
before the run of its label-free arms (:data:`LABEL_FREE`)."""


METRIC_NAMES = {"knn_mixed_rand": "kNN mixed_rand", "bg_gap": "BG-Gap", "retrieval_rank1": "retrieval rank-1",
                "maxboxacc": "MaxBoxAcc"}
"""How the claims' evidence names the columns it quotes."""


def claims(rows: pd.DataFrame, num_classes: int = 10) -> pd.DataFrame:
    """The study's :data:`CLAIMS` answered from the rows, per start: ``claim, question, init, evidence, holds``.

    One rule for every claim: a difference "holds" when the means differ in the stated direction by more than the
    larger of the two standard deviations over seeds (so one lucky seed does not make a claim). A claim is asked at
    every start where the study has both of its arms; a claim asked nowhere yet is one row, ``holds`` ``None``,
    whose evidence says it is not yet measured.
    """
    labels = [arm_label(m, i, loc) for m, i, loc in zip(rows["method"], rows["init"], rows["localiser"])]
    mean = rows.assign(arm=labels).groupby("arm").mean(numeric_only=True)
    std = rows.assign(arm=labels).groupby("arm").std(numeric_only=True).fillna(0.0)
    chance = 100.0 / num_classes

    def fmt(arm: str, col: str) -> str:
        return f"{arm} {mean.loc[arm, col]:.1f} ± {std.loc[arm, col]:.1f}"

    def above(a: str, b: str, col: str) -> bool:
        return bool(mean.loc[a, col] - mean.loc[b, col] > max(std.loc[a, col], std.loc[b, col]))

    out = []
    inits = list(dict.fromkeys([SCRATCH, *rows["init"]]))
    for claim in CLAIMS:
        asked = [(init, arm, other) for init, arm, other in claim.pairs(inits)
                 if arm in mean.index and (other is None or other in mean.index)]
        if not asked:
            arm, other = claim.pairs([SCRATCH])[0][1:]
            wanted = " and ".join(a for a in (arm, other) if a is not None)
            out.append((claim.number, f"{claim.number} {claim.question}", SCRATCH,
                        f"not yet measured: the study has no rows of {wanted}", None))
        for init, arm, other in asked:
            compared = [(col, above(arm, other, col)) for col in claim.higher] + [
                (col, above(other, arm, col)) for col in claim.lower] + [
                (col, not above(other, arm, col)) for col in claim.not_below]
            verdicts = [ok for _, ok in compared] + [bool(mean.loc[arm, col] >= floor) for col, floor in claim.at_least]
            evidence = [f"{METRIC_NAMES[col]} {fmt(arm, col)} vs {fmt(other, col)}" for col, _ in compared]
            evidence += [f"{METRIC_NAMES[col]} {fmt(arm, col)}" for col, _ in claim.at_least]
            if claim.near_chance:
                col = claim.near_chance
                verdicts.append(bool(mean.loc[arm, col] < chance + 2 * max(5.0, std.loc[arm, col])))
                evidence.append(f"chance {chance:.0f}")
            out.append((claim.number, f"{claim.number} {claim.question}", init, "; ".join(evidence), all(verdicts)))
    return pd.DataFrame(out, columns=["claim", "question", "init", "evidence", "holds"])


TABLE_COLUMNS = {"knn_mixed_rand": "kNN mixed_rand (%)", "bg_gap": "BG-Gap (points)",
                 "retrieval_rank1": "rank-1 (%)", "maxboxacc": "MaxBoxAcc (%)", "train_seconds": "train (min)"}
"""The study table's columns (the numbers the claims are judged on, and the training time) and their headers."""


def study_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per arm (indexed by ``method, init, localiser``), ``mean ± std`` over seeds of :data:`TABLE_COLUMNS`:
    percentages and points with one decimal, the training time in minutes with none."""
    out = {}
    for arm, metrics in zip(present_arms(rows), to_results(rows).values()):
        cells = {}
        for column, header in TABLE_COLUMNS.items():
            values = pd.Series(metrics[column], dtype=float) / (60.0 if column == "train_seconds" else 1.0)
            digits = 0 if column == "train_seconds" else 1
            cells[header] = (f"{values.mean():.{digits}f}" if len(values) == 1
                             else f"{values.mean():.{digits}f} ± {values.std():.{digits}f}")
        out[arm] = cells
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "init", "localiser"])
    return table


LOCALISER_NOTE = ("A view-based arm names its localiser in braces: `{annotation}` is the drawn box and mask, an upper "
                  "bound that no self-supervised method has; `{spectral_residual}` is the label-free detector chosen "
                  "on `val` before any training; `{self}` is the model's own map, refreshed every epoch "
                  "(`fgssl_lib.train.localiser`).")
"""What the reading says about the labels' braces."""


def _minutes(seconds: float) -> str:
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def reading(rows: pd.DataFrame, calibration: dict[str, Any], num_classes: int = 10) -> str:
    """The study's reading as markdown, every number from ``rows`` and the ``calibration`` record: the budget, the
    calibration against its targets, and each of :data:`CLAIMS` with its verdict at every start and the evidence."""
    budget = calibration["budget"]
    seeds = sorted(rows["seed"].astype(int).unique())
    arms = present_arms(rows)
    lines = [f"{len(seeds)} seeds of the `{budget['preset']}` preset ({budget['num_images']:,} images x "
             f"{budget['epochs']} epochs at {budget['image_size']} px, {budget['precision']}): {len(arms)} arms, "
             f"{len(rows)} runs, {_minutes(float(rows['train_seconds'].sum()))} of training summed over the runs. "
             f"Numbers are kNN top-1 on the test variants unless said otherwise, mean ± std over seeds; chance is "
             f"{100 / num_classes:.0f} %. {LOCALISER_NOTE}", ""]
    properties = {"learnable": ("learnable", "%", "at least"), "biased": ("biased", " points", "at least"),
                  "stable": ("stable", " points", "at most")}
    unmet = [name for name in properties if not calibration[name]["met"]]
    images = budget["calibration_val_images"]
    lines.append(f"**Calibration** on `val` ({f'{images:,}' if images else 'the evaluation'} images per variant): "
                 f"{'all three properties are met' if not unmet else 'not met: ' + ', '.join(unmet)}; "
                 + "; ".join(f"{label} {calibration[name]['value']:.1f}{unit} ({bound} "
                             f"{calibration[name]['target']:g})" for name, (label, unit, bound) in properties.items())
                 + ".")
    lines.append("")
    answers = claims(rows, num_classes)
    for question, judged in answers.groupby("question", sort=False):
        held = judged.loc[judged["holds"].eq(True), "init"].tolist()
        missed = judged.loc[judged["holds"].eq(False), "init"].tolist()
        if not held and not missed:
            lines.append(f"- **{question.rstrip('?')}: not yet measured.** {judged['evidence'].iloc[0]}.")
            continue
        if not missed:
            verdict = "holds" + (f" from every start ({', '.join(held)})" if len(held) > 1 else f" ({held[0]})")
        elif not held:
            verdict = "does not hold" + (f" from any start ({', '.join(missed)})" if len(missed) > 1
                                         else f" ({missed[0]})")
        else:
            verdict = f"holds from {', '.join(held)}; not from {', '.join(missed)}"
        evidence = "; ".join(f"{init}: {text}" for init, text in zip(judged["init"], judged["evidence"]))
        lines.append(f"- **{question.rstrip('?')}: {verdict}.** {evidence}.")
    return "\n".join(lines)
