"""Write the tiny TensorFlow checkpoints under tests/fixtures/tf/ (run once, results committed).

Transformers 5 has no TensorFlow classes, so this runs in a throwaway environment with the
last Transformers 4 line that still had them and a TensorFlow it supports:

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.15.1 transformers==4.44.2 "numpy<2" h5py
    /tmp/tfenv/bin/python scripts/make_tf_fixtures.py

Each fixture folder holds what `save_pretrained` writes for a TF model (`config.json`,
`tf_model.h5`) and `tf_reference.npz`: fixed inputs and the TF model's own outputs on them,
so that tests can check the weight mapping against TensorFlow itself, not only against the
PyTorch model built from the mapped weights (a square kernel left untransposed would pass the
latter).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tf"

TINY = {
    "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
    "intermediate_size": 37, "vocab_size": 99, "max_position_embeddings": 64,
}  # fmt: skip


def _models() -> dict[str, tuple[str, object]]:
    """Fixture name -> (task, TF model) built from a tiny random config."""
    import tensorflow as tf
    import transformers as tr

    tf.random.set_seed(0)
    bert = tr.BertConfig(**TINY, type_vocab_size=2)
    distilbert = tr.DistilBertConfig(
        vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64
    )
    roberta = tr.RobertaConfig(**{**TINY, "max_position_embeddings": 66}, pad_token_id=1)
    gpt2 = tr.GPT2Config(
        vocab_size=99,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
    )
    return {
        "bert": ("text-classification", tr.TFBertForSequenceClassification(bert)),
        "distilbert": ("question-answering", tr.TFDistilBertForQuestionAnswering(distilbert)),
        "roberta": ("fill-mask", tr.TFRobertaForMaskedLM(roberta)),
        "gpt2": ("text-generation", tr.TFGPT2LMHeadModel(gpt2)),
    }


def main() -> int:
    import tensorflow as tf
    import transformers as tr

    rng = np.random.default_rng(0)
    for name, (task, model) in _models().items():
        folder = FIXTURES / name
        shutil.rmtree(folder, ignore_errors=True)
        input_ids = rng.integers(3, 99, size=(2, 7)).astype(np.int64)
        attention_mask = np.ones_like(input_ids)
        attention_mask[1, 5:] = 0  # one padded row, as a batch of unequal texts has
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        outputs = model({k: tf.constant(v) for k, v in inputs.items()}, training=False)
        model.save_pretrained(folder)
        model.config.save_pretrained(folder)
        arrays = {f"input.{k}": v for k, v in inputs.items()}
        for key in ("logits", "start_logits", "end_logits"):
            if key in outputs:
                arrays[f"output.{key}"] = outputs[key].numpy()
        np.savez_compressed(folder / "tf_reference.npz", **arrays)
        (folder / "TASK").write_text(task + "\n")
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{name}: {task}, {size / 1024:.0f} KiB, outputs {sorted(arrays)}")
    print(f"TensorFlow {tf.__version__}, Transformers {tr.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
