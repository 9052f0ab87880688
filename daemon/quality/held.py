"""The speaker decisions of a voice, in voices/<voice>/speaker.json: which clips the import
held back because they did not sound like the voice's other clips, and which of those the
user kept anyway (`voicedrop keep`).

A held clip stays in clips/ and is transcribed, but it is left out of the latents
(`tts.latents.voice_clips`) and of the dataset lists until it is kept. The file lives in the
voice's folder, not the job ledger, so a rebuilt ledger holds back the same clips. No torch,
no numpy: `status` and the render path read it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from enum import StrEnum

from daemon.core import atomic
from daemon.core.jobs import SpeakerCheck, build
from daemon.core.paths import VoicePaths

DECISIONS_FILE = "speaker.json"
MISMATCH = "speaker_mismatch"  # the warning's slug
DECISIONS_VERSION = 1


class Decision(StrEnum):
    HELD = "held"  # left out of the latents and the dataset until the user decides
    KEPT = "kept"  # the user said it is the voice (`voicedrop keep`)


@dataclass(frozen=True)
class ClipDecision:
    decision: Decision
    check: SpeakerCheck


class NotHeld(Exception):
    """`voicedrop keep` named a clip the import did not hold back."""


class SpeakerDecisions:
    """speaker.json read whole; a damaged file reads as no decisions, like a damaged job
    record, rather than stopping renders."""

    def __init__(self, voice: VoicePaths) -> None:
        self.voice = voice
        self.path = voice.home / DECISIONS_FILE
        self.clips: dict[str, ClipDecision] = {}
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            self.clips = {name: build(ClipDecision, entry) for name, entry in raw["clips"].items()}
        except FileNotFoundError:
            pass
        except (ValueError, TypeError, KeyError, AttributeError):
            self.clips = {}

    def held(self) -> set[str]:
        """Names of the clips left out now (a removed clip's name may linger: harmless)."""
        return {name for name, d in self.clips.items() if d.decision == Decision.HELD}

    def settle(self, clip: str, check: SpeakerCheck | None) -> None:
        """Record the import's verdict on `clip`, replacing any decision left under its name
        by a removed clip of the same name."""
        if check is not None and check.mismatch:
            self.clips[clip] = ClipDecision(Decision.HELD, check)
        elif self.clips.pop(clip, None) is None:
            return
        self.save()

    def keep(self, clip: str) -> ClipDecision:
        decision = self.clips.get(clip)
        if decision is None or decision.decision != Decision.HELD:
            held = ", ".join(sorted(self.held())) or "none"
            raise NotHeld(f"voice {self.voice.name} holds no clip {clip!r} back (held: {held})")
        self.clips[clip] = dataclasses.replace(decision, decision=Decision.KEPT)
        self.save()
        return self.clips[clip]

    def save(self) -> None:
        record = {
            "version": DECISIONS_VERSION,
            "clips": {name: dataclasses.asdict(d) for name, d in sorted(self.clips.items())},
        }
        atomic.write_text(self.path, json.dumps(record, indent=1, ensure_ascii=False))


def held_clips(voice: VoicePaths) -> set[str]:
    return SpeakerDecisions(voice).held()


def mismatch_warning(voice: str, clip: str, check: SpeakerCheck) -> str:
    """The `speaker_mismatch` warning of a held clip, as the import logs it and status shows it."""
    return (
        f"{MISMATCH}: does not sound like the voice's other {check.compared_with} clips: "
        f"similarity {check.similarity:.2f}, where they score {check.typical_low:.2f}-"
        f"{check.typical_high:.2f} among themselves (held below {check.threshold:.2f}); left "
        f"out of the latents and the dataset: `voicedrop keep {voice} {clip}` uses it anyway, "
        f"deleting its original from voices/{voice}/originals/ removes it"
    )
