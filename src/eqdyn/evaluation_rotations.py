"""Write the evaluation rotations of a task's held-out split: ``python -m eqdyn.evaluation_rotations``.

One file per task, an input of every analysis rule, reused for every checkpoint of every run: K Haar rotations per
example keyed by (seed, example id, k), or, for the voxel task, a Haar frame per example with the 24 cube rotations.
With ``--twirl-rotations M`` > 0 also the rotations of the test-time twirling check, independent of those: M Haar
rotations per example keyed by (seed, example id, j) in a stream of their own (``twirl_rotations``), or for the voxel
task a random order of the 24 cube rotations per example (``twirl_order``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from eqdyn.decomposition import EvaluationRotations, make_evaluation_rotations
from eqdyn.io import save_npz
from eqdyn.tasks import build_task

logger = logging.getLogger(__name__)


def select_examples(example_ids: np.ndarray, max_examples: int | None) -> np.ndarray:
    """The evaluated examples: the first ``max_examples`` by example id (stable as the split grows)."""
    ordered = np.sort(np.asarray(example_ids, dtype=np.int64))
    return ordered if max_examples is None else ordered[:max_examples]


def save_evaluation_rotations(path: str | Path, rotations: EvaluationRotations, seed: int, design: str) -> None:
    arrays = {
        "example_id": rotations.example_id,
        "rotations": rotations.rotations,
        "enumerated": np.array(rotations.enumerated),
        "seed": np.array(seed),
        "design": np.array(design),
    }
    for name in ("frames", "twirl_rotations", "twirl_order"):
        if getattr(rotations, name) is not None:
            arrays[name] = getattr(rotations, name)
    save_npz(path, **arrays)


def load_evaluation_rotations(path: str | Path) -> tuple[EvaluationRotations, int]:
    """The rotations and the seed that made them (the same seed keys the example noise)."""
    with np.load(path) as data:
        optional = {
            name: data[name] if name in data.files else None for name in ("frames", "twirl_rotations", "twirl_order")
        }
        rotations = EvaluationRotations(data["example_id"], data["rotations"], bool(data["enumerated"]), **optional)
        return rotations, int(data["seed"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True, help="task name")
    parser.add_argument("--task-settings", type=Path, required=True, help="JSON with the task's settings")
    parser.add_argument("--split", type=Path, required=True, help="held-out split (.npz with example_id)")
    parser.add_argument("--num-rotations", type=int, required=True)
    parser.add_argument(
        "--twirl-rotations",
        type=int,
        default=0,
        help="Haar rotations per example for the test-time twirling check (0: none; the voxel task "
        "stores an order of its 24 cube rotations instead)",
    )
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    task = build_task(args.task, **json.loads(args.task_settings.read_text()))
    with np.load(args.split) as data:
        example_ids = select_examples(data["example_id"], args.max_examples)
    rotations = make_evaluation_rotations(task, example_ids, args.seed, args.num_rotations, args.twirl_rotations)
    save_evaluation_rotations(args.out, rotations, args.seed, task.evaluation_design)
    twirl = "" if rotations.twirl_rotations is None else f" + {rotations.twirl_rotations.shape[1]} twirling"
    logger.info(
        "%s: %d examples x %d rotations%s (%s, seed %d) -> %s",
        args.task,
        len(example_ids),
        rotations.rotations.shape[1],
        twirl,
        task.evaluation_design,
        args.seed,
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
