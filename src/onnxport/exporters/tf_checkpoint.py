"""Load stage, TensorFlow side: Transformers' `tf_model.h5` weights into the PyTorch class.

Transformers 5 dropped its TensorFlow classes and with them the TF-to-PyTorch weight loader,
so a checkpoint saved only as `tf_model.h5` cannot be loaded any more. The file is a Keras
weights file: one HDF5 group per top-level layer, each listing its weights by TF variable
name (`tf_bert_for_question_answering/bert/encoder/layer_._0/attention/self/query/kernel:0`).
They are read with h5py (no TensorFlow), renamed the way the TF classes mirrored the PyTorch
ones, reshaped (dense kernels are stored (in, out), convolution kernels channels-last), and
assigned by name and shape. Every parameter must be filled and every weight used, or the load
stops naming what is missing or left over: a silently random layer would still "validate"
against the PyTorch model it was put in.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxport.errors import MissingExtraError, ModelFileError, first_line

logger = logging.getLogger(__name__)


# Last name part in TF -> in PyTorch (Keras Dense/LayerNorm/Embedding/BatchNorm variables).
_LEAF_NAMES = {
    "kernel": "weight",
    "gamma": "weight",
    "beta": "bias",
    "embeddings": "weight",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}
_MAX_LISTED = 6


@dataclass(frozen=True)
class TFLoadReport:
    """What loading a TF checkpoint did: counts, and the head weights it left unused."""

    path: Path
    weights: int
    parameters: int
    transposed: int
    tied: tuple[str, ...]
    unused_head: tuple[str, ...]


def read_h5_weights(path: Path) -> dict[str, np.ndarray]:
    """The weights of a Keras `.h5` weights file by TF variable name, in file order.

    A variable shared by two layers (a tied embedding) is stored once per layer; it is kept
    once, and copies that differ are refused.
    """
    try:
        import h5py
    except ImportError as err:  # part of the exporters extra: only a broken install gets here
        raise MissingExtraError(
            "Reading a TensorFlow checkpoint needs h5py (in the 'exporters' extra): "
            "pip install 'onnxport[exporters]'",
            extra="exporters",
            missing=["h5py"],
        ) from err
    weights: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as handle:
            root = handle.get("model_weights", handle)
            layer_names = [_text(n) for n in root.attrs.get("layer_names", list(root.keys()))]
            for layer in layer_names:
                group = root[layer]
                for raw in group.attrs.get("weight_names", []):
                    name = _text(raw)
                    value = np.asarray(group[name])
                    key = name.removesuffix(":0")
                    if key in weights and not np.array_equal(weights[key], value):
                        raise ModelFileError(
                            f"'{path}' stores two different values for the weight '{key}'.",
                            model=str(path),
                        )
                    weights[key] = value
    except (OSError, KeyError, ValueError) as err:
        raise ModelFileError(
            f"'{path}' is not a readable Keras weights file ({first_line(err)}). Re-download "
            "or re-save the TensorFlow checkpoint.",
            model=str(path),
        ) from err
    if not weights:
        raise ModelFileError(f"'{path}' holds no weights.", model=str(path))
    return weights


def pytorch_name(tf_name: str) -> tuple[str, bool]:
    """The PyTorch parameter name for a TF variable name, and whether it is a Keras kernel.

    The first part names the whole TF model (`tf_bert_for_masked_lm`) and has no PyTorch
    counterpart; `layer_._0` is Keras' spelling of the list item `layer.0`.
    """
    parts = tf_name.split("/")[1:]
    if not parts:
        return tf_name, False
    leaf = parts[-1]
    parts[-1] = _LEAF_NAMES.get(leaf, leaf)
    name = ".".join(parts).replace("_._", ".")
    return re.sub(r"\.+", ".", name), leaf in {"kernel", "depthwise_kernel", "pointwise_kernel"}


def to_pytorch_layout(value: np.ndarray, is_kernel: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Reshape a TF array to the PyTorch parameter's layout, or return it unchanged."""
    if is_kernel and value.ndim == 2:
        value = value.T  # Dense: (in, out) -> Linear: (out, in)
    elif is_kernel and value.ndim in (3, 4, 5):
        # Conv: (*spatial, in, out) -> (out, in, *spatial)
        value = np.transpose(value, (value.ndim - 1, value.ndim - 2, *range(value.ndim - 2)))
    if value.shape != shape and value.size == int(np.prod(shape)):
        # GPT-2's Conv1D biases are stored (1, n); PyTorch keeps (n,)
        squeezed = tuple(d for d in value.shape if d != 1)
        if squeezed == tuple(d for d in shape if d != 1):
            value = value.reshape(shape)
    return value


def load_tf_weights(model: Any, path: Path) -> TFLoadReport:
    """Fill `model`'s parameters from the TF checkpoint at `path`, all of them or none.

    When `model` is the class the checkpoint was saved from (config.json's `architectures`),
    every weight must be used. Exported for another task, the checkpoint's own head is left
    unused with a warning; the parameters the task needs must still all be there.
    """
    import torch

    weights = read_h5_weights(path)
    state = model.state_dict(keep_vars=True)
    wanted = _required_names(model)
    prefix = getattr(model, "base_model_prefix", "")
    is_base = bool(prefix) and not hasattr(model, prefix)
    same_class = type(model).__name__ in (getattr(model.config, "architectures", None) or [])
    assigned: dict[str, np.ndarray] = {}
    unused: list[str] = []
    mismatched: list[str] = []
    transposed = 0
    for tf_name, value in weights.items():
        name, is_kernel = pytorch_name(tf_name)
        if name not in state and is_base and name.startswith(prefix + "."):
            name = name[len(prefix) + 1 :]  # the bare model has no `bert.` level
        if name not in state:
            unused.append(tf_name)
            continue
        target = tuple(state[name].shape)
        array = to_pytorch_layout(value, is_kernel, target)
        if array.shape != target:
            mismatched.append(f"{tf_name} {value.shape} -> {name} {target}")
            continue
        transposed += int(is_kernel and array.ndim > 1)
        assigned[name] = array
    cls = type(model).__name__
    if mismatched:
        raise ModelFileError(
            f"The TensorFlow weights in '{path}' do not fit its config.json: "
            f"{_listed(mismatched)}. Check that config.json belongs to these weights.",
            model=str(path),
        )
    with torch.no_grad():
        for name, array in assigned.items():
            tensor = state[name]
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(tensor.dtype))
    tied = _tied_parameters(model, wanted, set(assigned))
    missing = [name for name in wanted if name not in assigned and name not in tied]
    problems = []
    if unused and (same_class or missing):
        problems.append(f"{len(unused)} weight(s) match no parameter of {cls} ({_listed(unused)})")
    if missing:
        problems.append(f"{len(missing)} parameter(s) of {cls} are not in it ({_listed(missing)})")
    if problems:
        hint = (
            "Check config.json's model_type and architectures against the weights."
            if same_class or not assigned
            else "The checkpoint lacks this task's head: export it for the task it was saved "
            f"for ({', '.join(model.config.architectures or ['see config.json'])})."
        )
        raise ModelFileError(
            f"The TensorFlow checkpoint '{path}' does not fit {cls}: {'; '.join(problems)}. "
            + hint,
            model=str(path),
        )
    if unused:
        logger.warning(
            "%d weight(s) of the checkpoint's head are not used by %s: %s.",
            len(unused),
            cls,
            _listed(unused),
        )
    return TFLoadReport(
        path=path,
        weights=len(weights),
        parameters=len(wanted),
        transposed=transposed,
        tied=tuple(sorted(tied)),
        unused_head=tuple(unused),
    )


def _required_names(model: Any) -> list[str]:
    """Names that a checkpoint must fill: every parameter, and BatchNorm running statistics.

    Other buffers (position ids, causal masks) are computed by the model, not trained.
    """
    names = [name for name, _ in model.named_parameters(remove_duplicate=False)]
    names += [
        name
        for name, _ in model.named_buffers(remove_duplicate=False)
        if name.endswith(("running_mean", "running_var"))
    ]
    return names


def _tied_parameters(model: Any, wanted: list[str], assigned: set[str]) -> set[str]:
    """Parameters not in the checkpoint that share storage with one that was assigned.

    `tie_weights` re-ties what the config declares tied (a language-model head to the input
    embeddings), so such a parameter is filled by the assignment it shares.
    """
    model.tie_weights()
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(dict(model.named_buffers(remove_duplicate=False)))
    filled = {tensors[name].data_ptr() for name in assigned if name in tensors}
    return {
        name
        for name in wanted
        if name not in assigned and name in tensors and tensors[name].data_ptr() in filled
    }


def _text(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")
