"""A new model and its tokenizers for a training run.

* ``--init pretrained``: networks and tokenizers from their Hugging Face names or local paths
  (or a GGUF source, :mod:`learner.model.gguf_source`). With ``encoder="lm"`` (``smollm2-135m``)
  the base LM is also the amortizer and question encoder, and its tokenizer serves all three.
* ``--init scratch``: a byte-level BPE tokenizer trained on the training corpus (shared by both
  sides), networks from config with random weights; the base LM is first trained as a plain LM on
  the ``--lm-corpus`` when given (:mod:`learner.training.lm_pretrain`) and saved to ``<run>/base_lm`` so that
  other runs (e.g. the MAC baseline) can reuse it with ``--base-lm``.
* ``--base-lm DIR`` (with scratch): that trained LM and its tokenizer; the T5s from scratch.
* Random-init encoders then get a retrieval warm-up at the start of training (:mod:`learner.training.warmup`).
* ``--init-from CKPT``: the built model then takes that checkpoint's weights
  (:mod:`learner.training.init_from`), e.g. an amortizer pretrained by `mbc pretrain-amortizer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from transformers import T5Model

from infra.logging import get_logger
from learner.model.amortization import t5_config_from_spec
from learner.model.base_lm import lm_config_from_spec, lm_from_config, load_pretrained_lm
from learner.model.build import assemble, assemble_on_lm, build_model
from learner.model.mbc import MBCModel
from learner.text.tokenizers import Tokenizers, corpus_texts, load_tokenizer, train_tokenizer
from learner.training.init_from import init_weights_from
from learner.training.lm_pretrain import lm_corpus, pretrain_lm

if TYPE_CHECKING:
    from corpora.types import QADataset
    from learner.training.spec import RunSpec

log = get_logger("learner.training.init")


def _scratch_lm(
    spec: RunSpec, train_ds: QADataset, progress: bool, save: bool
) -> tuple[Any, Any]:  # (LM, tokenizer)
    tcfg, cfg = spec.train, spec.model
    texts = list(corpus_texts(train_ds.rows()))
    if spec.lm_corpus is not None:
        texts += list(corpus_texts(spec.lm_corpus.rows()))
    tok = train_tokenizer(texts, tcfg.tokenizer_vocab_size)
    lm: Any = lm_from_config(
        lm_config_from_spec(cfg.lm, len(tok), tok.pad_token_id, tok.eos_token_id, tok.eos_token_id)
    )
    if spec.lm_corpus is not None and tcfg.lm_pretrain_epochs > 0:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        losses = pretrain_lm(
            lm,
            tok,
            lm_corpus(spec.lm_corpus),
            epochs=tcfg.lm_pretrain_epochs,
            lr=tcfg.lm_pretrain_lr,
            batch_size=tcfg.lm_pretrain_batch_size,
            seed=tcfg.seed,
            max_len=cfg.lm.max_positions - cfg.prefix_len,
            device=device,
            progress=progress,
        )
        lm.to("cpu")
        log.info("base LM pretrained", epochs=tcfg.lm_pretrain_epochs, final_loss=round(losses[-1], 4))
    if save:
        out = spec.run_dir / "base_lm"
        lm.save_pretrained(out)
        tok.save_pretrained(out)
    return lm, tok


def build_for_training(
    spec: RunSpec, train_ds: QADataset, progress: bool = True, save_base_lm: bool = True
) -> tuple[MBCModel, Tokenizers, str | None]:
    """(model, tokenizers, lm_source) where lm_source names a base LM *not* stored in checkpoints.

    With several processes every one builds the same model from the same seed (the wrapped model
    is then synchronised from process 0); only the main one writes ``<run>/base_lm``
    (``save_base_lm``), so that processes do not write one folder at the same time.
    """
    model, tokenizers, source = _build(spec, train_ds, progress, save_base_lm)
    if spec.init_from is not None:
        init_weights_from(model, spec.init_from, source or spec.lm_source)
    return model, tokenizers, source


def _build(
    spec: RunSpec, train_ds: QADataset, progress: bool, save_base_lm: bool
) -> tuple[MBCModel, Tokenizers, str | None]:
    cfg, tcfg = spec.model, spec.train
    if spec.init == "pretrained" and cfg.encoder == "lm":
        # one tokenizer for documents, questions and answers: the base LM's own
        source = spec.lm_source or cfg.lm.name
        tok = load_tokenizer(source)
        model = build_model(cfg, "pretrained", Tokenizers(tok, tok, shared=True), tcfg.memory, source)
        return model, Tokenizers(tok, tok, shared=True), source
    if spec.init == "pretrained":
        tokenizers = Tokenizers(load_tokenizer(spec.lm_source or cfg.lm.name), load_tokenizer(cfg.amort.name))
        model = build_model(cfg, "pretrained", tokenizers, tcfg.memory, spec.lm_source)
        return model, tokenizers, None if spec.lm_source else cfg.lm.name
    if spec.lm_source is not None:
        tok = load_tokenizer(spec.lm_source)
        lm = load_pretrained_lm(cfg.lm, spec.lm_source)
    else:
        lm, tok = _scratch_lm(spec, train_ds, progress, save_base_lm)
    if cfg.encoder == "lm":
        return assemble_on_lm(cfg, lm, tcfg.memory), Tokenizers(tok, tok, shared=True), None
    t5_cfg = (len(tok), int(tok.pad_token_id), int(tok.eos_token_id))
    amort = T5Model(t5_config_from_spec(cfg.amort, *t5_cfg))
    question = T5Model(t5_config_from_spec(cfg.question, *t5_cfg))
    return assemble(cfg, amort, question, lm, tcfg.memory), Tokenizers(tok, tok, shared=True), None
