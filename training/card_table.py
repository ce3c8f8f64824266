"""The evaluation stored in a checkpoint's card.json as a Markdown table, so the README's
figures are printed from the card rather than typed.

    python -m training.card_table streamer/checkpoints/tiny
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SPLIT_ORDER = ("world:test", "world:compositional", "world:long", "world:wild")


def evaluation_table(card: dict[str, Any]) -> str:
    """Exact match per question kind (rows) and evaluated data set (columns), then overall."""
    evaluation = card.get("evaluation") or {}
    if not evaluation:
        raise ValueError("the card holds no evaluation; run `streamer eval CKPT --data ... --card` first")
    splits = [s for s in SPLIT_ORDER if s in evaluation] + sorted(s for s in evaluation if s not in SPLIT_ORDER)
    kinds = sorted({k for s in splits for k in evaluation[s]["per_kind"]})
    lines = ["| kind | " + " | ".join(s.removeprefix("world:") for s in splits) + " |",
             "|---|" + "---|" * len(splits)]
    for kind in kinds:
        cells = []
        for s in splits:
            entry = evaluation[s]["per_kind"].get(kind)
            cells.append("–" if entry is None else f"{100 * entry['accuracy']:.1f}%")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| **overall** | " + " | ".join(f"**{100 * evaluation[s]['overall']:.1f}%**" for s in splits) + " |")
    lines.append("| questions (clips) | " + " | ".join(
        f"{evaluation[s]['questions']} ({evaluation[s]['clips']})" for s in splits) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder holding card.json")
    args = parser.parse_args(argv)
    path = args.checkpoint / "card.json"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SystemExit(f"cannot read {path}: {err}") from None
    try:
        print(evaluation_table(card))
    except ValueError as err:
        raise SystemExit(f"{path}: {err}") from None


if __name__ == "__main__":
    main()
