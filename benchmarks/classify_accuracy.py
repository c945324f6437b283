"""Accuracy and throughput of the inbound classifier on tests/fixtures/mail/<class>/*.eml.

    .venv/bin/python benchmarks/classify_accuracy.py [--seconds 2] [--fixtures DIR]

Prints, per expected class (the folder name), how many messages were classified correctly, the
overall accuracy, every miss with its evidence, and the throughput of parse_inbound + classify
against a raw baseline of plain ``email.message_from_bytes(raw, policy=email.policy.default)``
over the same files in the same run.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sequencer.core.inbound import InboundClass, classify, parse_inbound  # noqa: E402


def load(folder: Path) -> list[tuple[str, InboundClass, bytes]]:
    known = {k.value for k in InboundClass}
    return [
        (f"{p.parent.name}/{p.name}", InboundClass(p.parent.name), p.read_bytes())
        for p in sorted(folder.glob("*/*.eml"))
        if p.parent.name in known
    ]


def rate(work: Callable[[bytes], object], messages: list[bytes], seconds: float) -> float:
    """Messages per second over whole passes of ``messages``, for at least ``seconds``."""
    done, started = 0, time.perf_counter()
    while True:
        for raw in messages:
            work(raw)
        done += len(messages)
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per throughput measurement")
    ap.add_argument("--fixtures", type=Path, default=ROOT / "tests" / "fixtures" / "mail")
    args = ap.parse_args()

    fixtures = load(args.fixtures)
    if not fixtures:
        print(f"no fixtures under {args.fixtures}")
        return 1
    total: Counter[InboundClass] = Counter()
    right: Counter[InboundClass] = Counter()
    misses: list[str] = []
    for name, expected, raw in fixtures:
        verdict = classify(parse_inbound(raw), raw)
        total[expected] += 1
        if verdict.klass is expected:
            right[expected] += 1
        else:
            misses.append(f"  {name}: got {verdict.klass.value} ({'; '.join(verdict.evidence)})")

    print(f"{'class':<14}{'count':>7}{'correct':>9}{'accuracy':>10}")
    for klass in InboundClass:
        if total[klass]:
            print(
                f"{klass.value:<14}{total[klass]:>7}{right[klass]:>9}"
                f"{right[klass] / total[klass]:>10.1%}"
            )
    n, ok = sum(total.values()), sum(right.values())
    print(f"{'overall':<14}{n:>7}{ok:>9}{ok / n:>10.1%}")
    if misses:
        print("misclassified:", *misses, sep="\n")

    messages = [raw for _, _, raw in fixtures]
    size = sum(map(len, messages)) / len(messages)
    baseline = rate(
        lambda raw: email.message_from_bytes(raw, policy=email.policy.default),
        messages,
        args.seconds,
    )
    ours = rate(lambda raw: classify(parse_inbound(raw), raw), messages, args.seconds)
    print(f"\nthroughput over {len(messages)} messages (mean {size / 1024:.1f} KiB):")
    print(f"  email.message_from_bytes (baseline) {baseline:>9.0f} msg/s")
    print(f"  parse_inbound + classify            {ours:>9.0f} msg/s")
    print(f"  ratio                               {ours / baseline:>9.2f}x of baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
