"""What a run reads back from disk, read without running code and checked before it is trusted.

    <folder>/MANIFEST.json   {"version": 1, "files": {"<relative path>": {"size": bytes, "sha256": hex}}}
    <folder>/loop.json       the GRPO loop's position (step, data position, tokens, record offsets) and the Python
                             and NumPy RNG states, plain JSON
    <folder>/rng.safetensors the torch (and CUDA) RNG states as uint8 tensors

Every folder written through `checkpoint.write_atomically` (checkpoints, the SFT stage, the SFT cache) gets a
manifest of every file in it, written before its COMPLETE marker, and `check_manifest` refuses a folder in which a
file is missing, has another size or hash, is a link, or is not listed. The manifest catches truncation, bit rot
and half-copied folders; it is not a signature: whoever can write a folder can rewrite its manifest. What protects
against a crafted folder is that nothing planner_rl reads runs code: JSON, safetensors, and
`torch.load(weights_only=True)` (tensors and plain containers only) for the torch optimizer state. The one
exception is DeepSpeed's own checkpoint format (`ds/`), which DeepSpeed unpickles: docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch

MANIFEST = "MANIFEST.json"
LOOP_FILE = "loop.json"
RNG_FILE = "rng.safetensors"
UNLISTED = ("COMPLETE", MANIFEST)  # the marker is written after the manifest; the manifest cannot list itself


class CheckpointError(RuntimeError):
    """A checkpoint, stage or cache folder that cannot be used; the message names the folder and what is wrong."""


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor], source: Path) -> None:
    """`weights` into `model` (copied onto its device and dtype); tied embeddings are saved once, so a missing
    lm_head is fine, anything else missing or extra means another model's weights: CheckpointError naming `source`."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any("lm_head" not in k for k in missing):
        raise CheckpointError(f"{source} does not match the model: missing {missing}, unexpected {unexpected}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def write_manifest(folder: Path) -> None:
    """List every file under `folder` (relative path, size, sha256) in its MANIFEST.json."""
    folder = Path(folder)
    files = {}
    for p in _files(folder):
        rel = p.relative_to(folder).as_posix()
        if rel not in UNLISTED:
            files[rel] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    (folder / MANIFEST).write_text(json.dumps({"version": 1, "files": files}, indent=1))


def check_manifest(folder: Path) -> None:
    """Raise CheckpointError unless `folder` holds exactly the files its manifest lists, with their sizes and hashes.

    Sizes are compared first (cheap), so a truncated file is found before any hashing."""
    folder = Path(folder)
    try:
        doc = json.loads((folder / MANIFEST).read_text())
        listed = doc["files"]
        if doc.get("version") != 1 or not isinstance(listed, dict):
            raise TypeError("unknown manifest layout")
        sizes = {name: int(entry["size"]) for name, entry in listed.items()}
        hashes = {name: str(entry["sha256"]) for name, entry in listed.items()}
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: no {MANIFEST} (an older planner_rl's, or not a checkpoint)") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{folder}: {MANIFEST} is damaged ({e})") from None
    present = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
    for name, p in present.items():
        if p.is_symlink():
            raise CheckpointError(f"{folder}: {name} is a symbolic link; a checkpoint holds plain files only")
    extra = sorted(set(present) - set(listed) - set(UNLISTED))
    if extra:
        raise CheckpointError(f"{folder}: files not in its {MANIFEST}: {', '.join(extra)}")
    for name, size in sizes.items():
        if name not in present:
            raise CheckpointError(f"{folder}: {name} is missing (listed in its {MANIFEST})")
        if present[name].stat().st_size != size:
            got = present[name].stat().st_size
            raise CheckpointError(f"{folder}: {name} has {got} bytes, its {MANIFEST} says {size} (truncated?)")
    for name, digest in hashes.items():
        if sha256_file(present[name]) != digest:
            raise CheckpointError(f"{folder}: {name} does not match its sha256 in {MANIFEST} (damaged)")


# --- the loop state: JSON and safetensors, never pickle ---------------------------------------------------------
def save_loop(folder: Path, loop: dict) -> None:
    """Write the loop state (`step`, `position`, `generated`, `offsets`, `eval` (the newest evaluation's metrics),
    and `rng` as `checkpoint.rng_state` returns it) as loop.json + rng.safetensors."""
    from safetensors.torch import save_file

    rng = loop["rng"]
    version, internal, gauss = rng["python"]
    name, keys, pos, has_gauss, cached = rng["numpy"]
    doc = {k: v for k, v in loop.items() if k != "rng"}
    doc["rng"] = {
        "python": [version, list(internal), gauss],
        "numpy": [name, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }
    tensors = {"torch": rng["torch"].contiguous()}
    tensors |= {f"cuda.{i}": s.contiguous() for i, s in enumerate(rng.get("cuda", []))}
    (Path(folder) / LOOP_FILE).write_text(json.dumps(doc))
    save_file(tensors, str(Path(folder) / RNG_FILE))


def _need(ok: bool, path: Path, field: str, what: str) -> None:
    if not ok:
        raise CheckpointError(f"{path}: field '{field}' must be {what}")


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _words(value, n: int) -> bool:  # n unsigned 32-bit integers (a Mersenne Twister's state)
    return isinstance(value, list) and len(value) == n and all(_count(v) and v < 2**32 for v in value)


def load_loop(folder: Path) -> dict:
    """The loop state saved by `save_loop`, every field checked (CheckpointError naming the file and field)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / LOOP_FILE
    if not path.exists():
        old = " (loop.pt is the old pickle format, which is not loaded: it could run code)"
        raise CheckpointError(f"{folder}: no {LOOP_FILE}{old if (folder / 'loop.pt').exists() else ''}")
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    _need(isinstance(doc, dict), path, "", "a JSON object")
    for key in ("step", "position", "generated"):
        _need(_count(doc.get(key)), path, key, "an integer >= 0")
    offsets = doc.get("offsets")
    _need(isinstance(offsets, dict) and all(_count(v) for v in offsets.values()), path, "offsets", "{file: bytes}")
    ev = doc.setdefault("eval", {})  # the newest evaluation's metrics (NaN is written as NaN)
    _need(isinstance(ev, dict) and all(v is None or isinstance(v, (int, float)) for v in ev.values()), path, "eval",
          "{metric: number}")  # fmt: skip
    rng = doc.get("rng")
    _need(isinstance(rng, dict), path, "rng", "an object")
    py = rng.get("python")
    _need(isinstance(py, list) and len(py) == 3 and _count(py[0]) and _words(py[1], 625), path, "rng.python",
          "[version, 625 state words, gauss]")  # fmt: skip
    _need(py[2] is None or isinstance(py[2], float), path, "rng.python[2]", "null or a number")
    npy = rng.get("numpy")
    _need(isinstance(npy, list) and len(npy) == 5 and npy[0] == "MT19937" and _words(npy[1], 624), path,
          "rng.numpy", '["MT19937", 624 key words, pos, has_gauss, cached_gaussian]')  # fmt: skip
    _need(_count(npy[2]) and npy[2] <= 624 and npy[3] in (0, 1), path, "rng.numpy[2:4]", "pos <= 624 and 0/1")
    _need(isinstance(npy[4], (int, float)) and math.isfinite(npy[4]), path, "rng.numpy[4]", "a finite number")
    try:
        tensors = load_file(str(folder / RNG_FILE))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{folder / RNG_FILE}: cannot be read ({e})") from None
    cuda = sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k.split(".", 1)[1]))
    for key in ("torch", *cuda):
        _need(key in tensors and tensors[key].dtype == torch.uint8 and tensors[key].ndim == 1, folder / RNG_FILE,
              key, "a 1-D uint8 tensor")  # fmt: skip
    state = {
        "python": (py[0], tuple(py[1]), py[2]),
        "numpy": (npy[0], np.array(npy[1], dtype=np.uint32), npy[2], npy[3], float(npy[4])),
        "torch": tensors["torch"],
    }
    if cuda:
        state["cuda"] = [tensors[k] for k in cuda]
    return {k: v for k, v in doc.items() if k != "rng"} | {"rng": state}
