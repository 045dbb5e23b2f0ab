"""Decompose the held-out loss of your own model: ``python -m eqdyn.decompose``.

    python -m eqdyn.decompose --task flow_matching --model my_package.my_module:build --checkpoint weights.pt \
        --data test.npz --rotations 8 --out decomposition.csv

``--model module:callable`` names a function (or class) that returns an ``nn.Module`` with the task's forward
signature; it is called with the task if it takes an argument, else with none. ``--checkpoint`` (optional) holds
its weights: a ``state_dict`` or a checkpoint of this package (``{"weights": state_dict, ...}``). ``--data`` is a
split in the format of :mod:`eqdyn.data.datasets` (``.npz``), or ``example`` for the small example set shipped with
the package (:mod:`eqdyn.examples`). The rotations are keyed by (``--seed``, example id), as in the workflow:
``--rotations`` K i.i.d. Haar rotations per example for point-cloud tasks; the voxel task enumerates the 24 cube
rotations inside a Haar frame per example (``--rotations`` is then ignored).

Prints the table (:meth:`eqdyn.decomposition.Decomposition.summary`: part, t_bin, quantity, k, value, stderr, n)
and writes it as CSV with ``--out``; ``--examples-out`` writes the per-example losses.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from eqdyn.checkpoints import load_weights, select_device
from eqdyn.decomposition import Decomposition, decompose_batches, evaluation_batches, make_evaluation_rotations
from eqdyn.evaluation_rotations import select_examples
from eqdyn.examples import example_split
from eqdyn.molecules import MoleculeDataset
from eqdyn.run_config import TASK_NAMES
from eqdyn.tasks import Task, build_task

logger = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def load_factory(spec: str) -> Callable[..., Any]:
    """The callable ``module:name`` names (``name`` may be dotted: ``module:Class.method``)."""
    module_name, separator, attribute = spec.partition(":")
    if not separator or not module_name or not attribute:
        raise ValueError(f"--model {spec!r}: expected module:callable, e.g. my_package.my_module:build")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"--model {spec!r}: {module_name} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"--model {spec!r}: {attribute} is not callable")
    return target


def build_user_model(spec: str, task: Task) -> nn.Module:
    """Call the factory with the task when it takes an argument, else with none; it must return an nn.Module."""
    factory = load_factory(spec)
    try:
        inspect.signature(factory).bind(task)
        takes_task = True
    except TypeError:
        takes_task = False
    except ValueError:  # no signature (some builtins): try without arguments
        takes_task = False
    model = factory(task) if takes_task else factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"--model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def data_path(data: str, task: str) -> Path:
    return example_split(task) if data == "example" else Path(data)


def run(args: argparse.Namespace) -> Decomposition:
    settings = json.loads(args.task_settings) if args.task_settings else {}
    task = build_task(args.task, **settings)
    device = select_device(args.device)
    dtype = DTYPES[args.dtype]
    model = build_user_model(args.model, task)
    if args.checkpoint is not None:
        model = load_weights(model, args.checkpoint, device)
    model = model.to(device=device, dtype=dtype).eval()
    split = data_path(args.data, args.task)
    dataset = MoleculeDataset.load(split)
    example_ids = select_examples(dataset.example_id.numpy(), args.max_examples)
    evaluation = make_evaluation_rotations(task, example_ids, args.seed, args.rotations, args.twirl_rotations)
    batches = evaluation_batches(
        task, dataset, evaluation, args.seed, evaluations_per_batch=args.evaluations_per_batch, dtype=dtype
    )
    logger.info(
        "%s: %d examples of %s x %d rotations (%s) on %s",
        args.task,
        len(example_ids),
        split,
        evaluation.rotations.shape[1],
        task.evaluation_design,
        device,
    )
    return decompose_batches(task, model, batches, device)


def parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m eqdyn.decompose", description=__doc__, formatter_class=formatter)
    parser.add_argument("--task", required=True, choices=TASK_NAMES)
    parser.add_argument("--task-settings", default=None, help="the task's settings as JSON")
    parser.add_argument("--model", required=True, help="module:callable returning the nn.Module")
    parser.add_argument("--checkpoint", type=Path, default=None, help="weights: a state_dict or a checkpoint (.pt)")
    parser.add_argument("--data", required=True, help="held-out split (.npz), or 'example' for the shipped example set")
    parser.add_argument("--rotations", type=int, default=8, help="Haar rotations per example, K >= 2 (default 8)")
    parser.add_argument("--twirl-rotations", type=int, default=0, help="also the loss twirled over M rotations")
    parser.add_argument("--seed", type=int, default=0, help="keys the rotations and the example noise")
    parser.add_argument("--max-examples", type=int, default=None, help="the first examples by id (default: all)")
    parser.add_argument("--evaluations-per-batch", type=int, default=512, help="a speed setting only")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads of torch")
    parser.add_argument("--out", type=Path, default=None, help="the table as CSV")
    parser.add_argument("--examples-out", type=Path, default=None, help="per-example losses as CSV")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    decomposition = run(args)
    table = decomposition.summary()
    printable = table.assign(k=table["k"].astype("string").fillna(""))
    print(printable.to_string(index=False))  # the command's output: the table itself
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
    if args.examples_out is not None:
        args.examples_out.parent.mkdir(parents=True, exist_ok=True)
        decomposition.examples().to_csv(args.examples_out, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
