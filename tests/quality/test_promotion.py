"""daemon.quality.promotion: when a fine-tune may replace the model a voice renders with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.core.config import TrainingSettings
from daemon.core.paths import Root
from daemon.quality.promotion import HoldOut, Margins, ModelScores, Promotion, decide, settle

MARGINS = Margins(max_cer_rise=0.02, max_similarity_drop=0.02, max_loss_rise=0.02)


def scores(cer=None, similarity=None, loss=None) -> ModelScores:
    return ModelScores("model", "0" * 64, cer, similarity, loss)


CURRENT = scores(cer=0.10, similarity=0.80, loss=2.0)


@pytest.mark.parametrize(
    ("candidate", "promoted", "named"),
    [
        (scores(cer=0.05, similarity=0.85, loss=1.8), True, ""),  # better on all three
        (scores(cer=0.10, similarity=0.80, loss=2.0), True, ""),  # equal
        (scores(cer=0.115, similarity=0.79, loss=2.03), True, ""),  # worse, within margins
        (scores(cer=0.13, similarity=0.80, loss=2.0), False, "character error rate 0.100 -> 0.130"),
        (scores(cer=0.10, similarity=0.75, loss=2.0), False, "speaker similarity 0.800 -> 0.750"),
        (scores(cer=0.10, similarity=0.80, loss=2.05), False, "validation loss 2.000 -> 2.050"),
        (scores(loss=2.05), False, "validation loss"),  # CER and similarity not measured
        (scores(cer=0.5, similarity=0.1), False, "character error rate"),  # no loss
        (scores(loss=1.9), True, "validation loss 2.000 -> 1.900"),
    ],
)
def test_decide(candidate: ModelScores, promoted: bool, named: str) -> None:
    decision = decide(candidate, CURRENT, MARGINS)
    assert decision.promote is promoted
    assert named in decision.reason
    if not promoted:
        assert decision.reason.startswith("worse than the current model")
        assert "training.promote_max_" in decision.reason  # names the setting that allows it


def test_a_score_either_model_lacks_is_skipped() -> None:
    without_loss = ModelScores("base", "0" * 64, 0.10, 0.80, None)
    decision = decide(scores(cer=0.11, similarity=0.80, loss=9.0), without_loss, MARGINS)
    assert decision.promote and "validation loss" not in decision.reason
    nothing = decide(scores(), scores(), MARGINS)
    assert nothing.promote and "no score to compare" in nothing.reason


def test_the_loss_margin_is_a_share_of_the_current_loss() -> None:
    high = ModelScores("base", "0" * 64, None, None, 200.0)
    assert decide(scores(loss=203.0), high, MARGINS).promote  # +1.5 %
    assert not decide(scores(loss=205.0), high, MARGINS).promote  # +2.5 %


def test_margins_come_from_the_training_settings() -> None:
    settings = TrainingSettings(promote_max_cer_rise=0.1, promote_max_loss_rise=0.5)
    assert Margins.from_settings(settings) == Margins(0.1, 0.02, 0.5)


def test_the_hold_out_texts_stay_picked_as_lines_are_added(tmp_path: Path) -> None:
    voice = Root.at(tmp_path).voice("anna")
    voice.dataset.mkdir(parents=True)
    lines = [f"audio/clip{i}_00000.wav|Line number {i}." for i in range(10)]
    (voice.dataset / "validation.txt").write_text("\n".join(lines[:6]) + "\n")
    before = HoldOut.of(voice, 3, seed=7)
    assert len(before.texts) == 3 and before.seeds == (7, 8, 9)
    (voice.dataset / "validation.txt").write_text("\n".join(lines) + "\n")
    after = HoldOut.of(voice, 10, seed=7)
    picked = [text for text in after.texts if text in lines_text(lines[:6])]
    assert picked[:3] == list(before.texts)  # added lines never reorder the earlier ones
    assert HoldOut.of(Root.at(tmp_path).voice("bob"), 3, seed=0) == HoldOut((), ())


def lines_text(lines: list[str]) -> set[str]:
    return {line.partition("|")[2] for line in lines}


class NoScoring:
    """A stand-in scorer for a decision already recorded: scoring again would be a bug."""

    def score(self, model, voice, holdout):
        raise AssertionError("a recorded decision is carried out, not scored again")

    def release(self) -> None:
        """Nothing loaded."""


def test_a_decision_recorded_before_a_kill_is_carried_out_as_recorded(tmp_path: Path) -> None:
    voice = Root.at(tmp_path).voice("anna")
    run = voice.home / "training" / "20260101-010000"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"finished": True, "step": 6}))
    candidate = run / "candidate.pth"
    candidate.write_bytes(b"the candidate's weights")
    recorded = Promotion(
        run.name,
        scores(cer=0.3, loss=2.0),
        CURRENT,
        MARGINS,
        decide(scores(cer=0.3, loss=2.0), CURRENT, MARGINS),
        0.0,
    )
    (run / "promotion.json").write_text(json.dumps(recorded.to_json()))

    assert settle(run, candidate, voice, NoScoring(), HoldOut((), ()), MARGINS) == recorded
    kept = voice.models / "rejected" / f"{run.name}.pth"
    assert kept.read_bytes() == b"the candidate's weights" and not candidate.exists()
    assert not (voice.models / "autoregressive.pth").exists()
    as_json = json.loads(json.dumps(recorded.to_json()))
    assert json.loads(kept.with_suffix(".json").read_text()) == as_json
    result = json.loads((run / "result.json").read_text())
    assert result["step"] == 6 and result["promotion"] == as_json


class FixedScorer:
    """A stand-in scorer (real weights cannot exist here): the candidate better on every
    score than CURRENT, the current model as CURRENT."""

    def __init__(self, candidate: Path) -> None:
        self.candidate = candidate
        self.scored: list[Path | None] = []

    def score(self, model, voice, holdout):
        self.scored.append(model)
        if model == self.candidate:
            return scores(cer=0.05, similarity=0.85, loss=1.8)
        return CURRENT

    def release(self) -> None:
        """Nothing loaded."""


def test_a_damaged_decision_record_is_scored_again_not_a_crash(tmp_path: Path) -> None:
    voice = Root.at(tmp_path).voice("anna")
    run = voice.home / "training" / "20260101-010000"
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"finished": True}))
    candidate = run / "candidate.pth"
    candidate.write_bytes(b"the candidate's weights")
    (run / "promotion.json").write_text('{"run": "20260101-01')  # cut short by a bad disk
    scorer = FixedScorer(candidate)
    promotion = settle(run, candidate, voice, scorer, HoldOut((), ()), MARGINS)
    assert scorer.scored == [candidate, None] and promotion.decision.promote
    assert (voice.models / "autoregressive.pth").read_bytes() == b"the candidate's weights"
    assert json.loads((run / "promotion.json").read_text())["decision"]["promote"] is True
