"""Reads *.safetensors weights (single file or sharded with an index) into preallocated tensors.

Every failure is a `CheckpointError` naming the file and what is wrong with it: missing files,
unreadable or corrupt safetensors, tensors of the wrong shape, missing or unexpected tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from tqdm import tqdm

from engine.errors import EngineError

INDEX_FILE = "model.safetensors.index.json"
# Checkpoint tensors the engine recomputes or shares instead of loading.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class CheckpointError(EngineError):
    """A checkpoint cannot be loaded; the message names the file and the problem."""


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a checkpoint: the shards of its index, else every *.safetensors."""
    root = Path(model_dir)
    if not root.is_dir():
        raise CheckpointError(f"{root}: model directory does not exist")
    index = root / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index ({exc!r})") from exc
        files = [root / name for name in sorted(set(weight_map.values()))]
        for file in files:
            if not file.is_file():
                raise CheckpointError(f"{file}: shard listed in {INDEX_FILE} is missing")
        return files
    files = sorted(root.glob("*.safetensors"))
    if not files:
        extra = " (only PyTorch .bin weights found; convert them to safetensors)" if any(
            root.glob("*.bin")
        ) else ""
        raise CheckpointError(f"{root}: no *.safetensors weight files{extra}")
    return files


def load_weights(
    model_dir: str | Path,
    slots: Mapping[str, torch.Tensor],
    *,
    skip: frozenset[str] = frozenset(),
    progress: bool = True,
) -> None:
    """Copy every checkpoint tensor into `slots[name]` (a view of a model parameter, already on
    the target device and dtype). Names in `skip` are ignored (e.g. a tied lm_head)."""
    files = weight_files(model_dir)
    loaded: set[str] = set()
    bar = tqdm(total=len(slots), desc="loading weights", unit="tensor", disable=not progress)
    try:
        for file in files:
            for name, tensor in _read(file):
                if name in skip or name.endswith(_IGNORED_SUFFIXES):
                    continue
                dest = slots.get(name)
                if dest is None:
                    raise CheckpointError(f"{file}: unexpected tensor {name!r} for this model")
                if tuple(tensor.shape) != tuple(dest.shape):
                    raise CheckpointError(
                        f"{file}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                        f"config.json implies {tuple(dest.shape)}"
                    )
                if name in loaded:
                    raise CheckpointError(f"{file}: tensor {name!r} appears in two files")
                dest.copy_(tensor)
                loaded.add(name)
                bar.update(1)
    finally:
        bar.close()
    missing = sorted(set(slots) - loaded)
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise CheckpointError(
            f"{Path(model_dir)}: tensors missing from the checkpoint: "
            f"{', '.join(missing[:5])}{more}"
        )


def _read(file: Path):
    """Yield (name, tensor) of one safetensors file; corrupt files become CheckpointError."""
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                try:
                    tensor = handle.get_tensor(name)
                except Exception as exc:  # safetensors raises its own untyped errors
                    raise CheckpointError(
                        f"{file}: cannot read tensor {name!r} (corrupt file?): {exc}"
                    ) from exc
                yield name, tensor
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{file}: not a readable safetensors file: {exc}") from exc
