"""Warm or cold, and which referral path a prospect is enrolled on.

A referral is warm only when *both* relationships are strong: ours with the referrer and the
referrer's with the prospect (plus the referrer's NPS, when the campaign asks for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sequencer.core.model import NamePolicy, Referral, Referrer, Temperature, TemperatureRule


@dataclass(frozen=True)
class Classification:
    temperature: Temperature
    reason: str


@dataclass(frozen=True)
class ReferralPath:
    referral: Referral
    referrer: Referrer

    @property
    def weakest_link(self) -> int:
        return min(self.referrer.our_strength, self.referral.strength)

    def rank_key(self) -> tuple[int, int, int, int, str]:
        """Higher is better: weakest link, then the sum, then NPS, then customer; id breaks ties."""
        r = self.referrer
        return (
            self.weakest_link,
            r.our_strength + self.referral.strength,
            r.nps if r.nps is not None else -1,
            int(r.is_customer),
            # invert the id so that max() picks the alphabetically *first* id on a full tie
            "".join(chr(0x10FFFF - ord(c)) for c in r.id),
        )


def classify(path: ReferralPath, rule: TemperatureRule) -> Classification:
    """Warm only when both relationships (and the NPS, if asked for) meet the campaign's bar."""
    r, ref = path.referrer, path.referral
    checks = [
        ("ours", r.our_strength, rule.min_our_strength),
        ("theirs", ref.strength, rule.min_their_strength),
    ]
    parts = []
    cold = False
    for label, value, need in checks:
        if value < need:
            cold = True
            parts.append(f"{label} {value}/5 < {need}")
        else:
            parts.append(f"{label} {value}/5")
    if rule.min_nps is not None:
        if r.nps is None or r.nps < rule.min_nps:
            cold = True
            parts.append(f"nps {'unknown' if r.nps is None else r.nps} < {rule.min_nps}")
        else:
            parts.append(f"nps {r.nps}")
    temperature = Temperature.COLD if cold else Temperature.WARM
    return Classification(temperature, f"{temperature.value}: " + ", ".join(parts))


def choose_path(
    paths: list[ReferralPath], nameable: Callable[[ReferralPath], bool] | None = None
) -> tuple[ReferralPath, list[ReferralPath]]:
    """The strongest path (its weaker strength is highest) and the others, best first.

    With ``nameable``, a path whose referrer may be named ranks above every path whose referrer
    may not: a 4/4 referrer who agreed beats a 5/5 one who refused (or a detractor)."""
    if not paths:
        raise ValueError("choose_path needs at least one referral path")

    def key(p: ReferralPath) -> tuple[int, tuple[int, int, int, int, str]]:
        return (int(nameable(p)) if nameable is not None else 0, p.rank_key())

    ordered = sorted(paths, key=key, reverse=True)
    return ordered[0], ordered[1:]


def may_name(referrer: Referrer, policy: NamePolicy) -> bool:
    if policy is NamePolicy.ALWAYS:
        return True
    if policy is NamePolicy.NEVER:
        return False
    return referrer.consent
