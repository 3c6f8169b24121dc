"""A seq-cls run's merged classifier as ONNX: exported through torch.onnx (the dynamo exporter, batch and length
dynamic), checked against the PyTorch model before it is kept, and run with ONNX Runtime on CPU.

    python -m sentlab.export RUN_ID OUT_DIR --onnx      # the merged Hugging Face folder plus OUT_DIR/model.onnx

The graph takes input_ids, attention_mask (and token_type_ids where the tokenizer gives them) and returns the
logits; OnnxClassifier gives the same DataFrame as sentlab.classifier.Classifier.predict.
"""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
from pathlib import Path

from sentlab.classifier import Classifier
from sentlab.errors import ConfigError

FILE = "model.onnx"
TOLERANCE = 1e-4  # largest absolute logit difference ONNX Runtime may show against PyTorch (fp32): rounding only
PACKAGES = "onnx onnxscript onnxruntime"


class OnnxMismatch(RuntimeError):
    """ONNX Runtime's logits differ from the PyTorch model's."""


def check_exportable(cfg) -> None:
    """Before anything loads: a seq_cls run, and the ONNX packages importable."""
    if cfg.head.name != "seq_cls":
        raise ConfigError(
            f"--onnx: head={cfg.head.name} is not exported to ONNX (its prediction scores label words through the "
            "model's key/value cache); export it without --onnx (--merge gives a Hugging Face folder)"
        )
    if cfg.quant.name != "none":
        raise ConfigError(f"--onnx: quant={cfg.quant.name}: only full-precision runs are exported to ONNX")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError(f"--onnx: {err.name} is not installed (pip install {PACKAGES})") from None


def _logits_of(model, names: list[str]):
    """The model as a module from tensors (in the order of `names`) to logits: what the graph computes."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).logits

    return Logits().eval()


def _inputs(classifier: Classifier, texts: list[str]):
    import torch

    batch = classifier.head.collate(classifier.head.features(texts))
    return {name: value for name, value in batch.items() if name != "labels" and isinstance(value, torch.Tensor)}


def export(classifier: Classifier, path: Path, texts: list[str]) -> float:
    """Write `classifier` (a merged seq_cls model) to `path` as ONNX once ONNX Runtime's logits match PyTorch's on
    `texts` within TOLERANCE; the largest difference. OnnxMismatch (nothing written) when they do not."""
    import numpy as np
    import torch

    # A copy is traced: after torch.onnx's export, the traced model ran several times slower in eager PyTorch.
    model = copy.deepcopy(classifier.model).float().eval()
    example = _inputs(classifier, texts[:2])
    names = list(example)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its notes on torchvision ops it skips, every export
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / FILE
        torch.onnx.export(
            _logits_of(model, names),
            tuple(example.values()),
            str(draft),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=(tuple({0: batch, 1: length} for _ in names),),  # forward(*inputs): one tuple
            dynamo=True,
            external_data=False,  # one file (models under 2 GB)
            verbose=False,
        )
        inputs = _inputs(classifier, texts)
        with torch.inference_mode():
            expected = model(**inputs).logits.float().numpy()
        got = OnnxClassifier.session(draft).run(["logits"], {k: v.numpy() for k, v in inputs.items()})[0]
        diff = float(np.abs(got - expected).max())
        if not diff <= TOLERANCE:
            raise OnnxMismatch(
                f"ONNX Runtime's logits differ from PyTorch's on {len(texts)} held-out texts by up to {diff:.2e} "
                f"(tolerance {TOLERANCE:g})"
            )
        shutil.move(str(draft), path)
    return diff


class OnnxClassifier(Classifier):
    """A seq_cls classifier whose forward passes run in ONNX Runtime (CPU): same labels and probabilities."""

    def __init__(self, path: Path, head, cfg, threads: int | None = None):
        super().__init__(self.session(path, threads), head, cfg)

    @staticmethod
    def session(path: Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Its threads would otherwise spin between calls, taking the cores from everything else in the process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def log_probs(self, texts: list[str], batch_size: int | None = None):
        import numpy as np

        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        features = self.head.features(list(texts))
        order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
        size = batch_size or self.cfg.train.eval_batch_size
        wanted = {i.name for i in self.model.get_inputs()}
        for start in range(0, len(order), size):
            rows = order[start : start + size]
            batch = self.head.collate([features[i] for i in rows])
            logits = self.model.run(["logits"], {k: v.numpy() for k, v in batch.items() if k in wanted})[0]
            shifted = logits - logits.max(axis=1, keepdims=True)
            out[rows] = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return out
