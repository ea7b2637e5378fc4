"""Molecular feature sets other than the diffusion one: ECFP and ChemBERTa (thesis Sec. 5.4).

Table 5.1 compares an MLP head (``head.py``, Sec. 5.3.4) on ChemBERTa embeddings with one on
ChemBERTa + MiDi diffusion features; ECFP4 bits are the classical floor every molecular
benchmark reports beside them. This module turns SMILES into those fixed-length vectors and
names feature-set combinations:

    X, errors = ecfp(smiles)                       # (n, 2048) float32; failed rows are nan
    enc = SmilesEncoder("/data/ChemBERTa-zinc-base-v1")
    Z = enc.encode(smiles)                         # (n, 768) float32, mean over real tokens
    parse_feature_set("chemberta+midi")            # ("chemberta", "midi")
    X = concat_features({"chemberta": Z, "midi": M}, ("chemberta", "midi"))

Pass the same (salt-stripped, canonical) SMILES as the conformer records of
``priorlab.data.molecules`` so every feature set describes the same molecule.

ChemBERTa weights are never downloaded: :class:`SmilesEncoder` loads a local folder written by
``save_pretrained``. :func:`build_tiny_roberta` writes a tiny *randomly initialised* RoBERTa
with a SMILES tokenizer so tests and CI exercise the same code path without weights; numbers
computed from it mean nothing about ChemBERTa.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

FEATURE_SETS = ("ecfp", "midi", "chemberta")
"""Feature-set names a study may combine with ``+`` (e.g. ``"ecfp+midi"``)."""

ROBERTA_TYPES = ("roberta", "xlm-roberta", "camembert")
"""Model types whose position ids start after the padding index (max length = positions - pad - 1)."""


# ----------------------------------------------------------------------------- ECFP

def parse_smiles(smiles: str):
    """An RDKit molecule from ``smiles``; ValueError saying what is wrong with it otherwise."""
    from rdkit import Chem, rdBase

    if not isinstance(smiles, str):
        raise ValueError(f"SMILES {smiles!r} is a {type(smiles).__name__}, not a string: drop "
                         "missing molecules before featurising them")
    if not smiles.strip():
        raise ValueError("empty SMILES: drop this row or give the molecule's SMILES")
    with rdBase.BlockLogs():  # the reason goes into the exception, not onto stderr
        raw = Chem.MolFromSmiles(smiles, sanitize=False)
        if raw is None:
            raise ValueError(f"RDKit cannot parse SMILES {smiles!r} (syntax error); fix or drop it")
        problems = [p.Message() for p in Chem.DetectChemistryProblems(raw)]
        mol = Chem.MolFromSmiles(smiles) if not problems else None
    if mol is None:
        why = "; ".join(problems) or "sanitisation failed"
        raise ValueError(f"RDKit rejects SMILES {smiles!r}: {why}; fix or drop it")
    if mol.GetNumAtoms() == 0:
        raise ValueError(f"SMILES {smiles!r} has no atoms; drop this row")
    return mol


@functools.lru_cache(maxsize=8)
def _morgan(radius: int, n_bits: int):
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)


def _check_ecfp_args(radius: int, n_bits: int) -> None:
    if radius < 0:
        raise ValueError(f"radius={radius}: use >= 0 (2 gives ECFP4, 3 ECFP6)")
    if n_bits < 1:
        raise ValueError(f"n_bits={n_bits}: use a positive length such as 1024 or 2048")


def ecfp_one(smiles: str, *, radius: int = 2, n_bits: int = 2048,
             counts: bool = False) -> np.ndarray:
    """The Morgan fingerprint (ECFP4 at radius 2) of one molecule as (n_bits,) float32.

    ``counts=True`` gives how often each hashed environment occurs instead of 0/1 bits.
    Raises ValueError naming the SMILES and RDKit's complaint when it cannot be parsed.
    """
    _check_ecfp_args(radius, n_bits)
    mol = parse_smiles(smiles)
    gen = _morgan(int(radius), int(n_bits))
    fp = gen.GetCountFingerprintAsNumPy(mol) if counts else gen.GetFingerprintAsNumPy(mol)
    return fp.astype(np.float32)


def ecfp(smiles_list: Sequence[str], *, radius: int = 2, n_bits: int = 2048,
         counts: bool = False) -> tuple[np.ndarray, dict[int, str]]:
    """ECFP of every molecule: ((n, n_bits) float32, {row index: error message}).

    A molecule that fails keeps its row, filled with nan, and its message is in the dict, so
    row i always belongs to ``smiles_list[i]``; drop those rows (``finite_rows``) before
    training. The batch never fails because of one molecule.
    """
    _check_ecfp_args(radius, n_bits)
    smiles_list = _as_list(smiles_list)
    out = np.full((len(smiles_list), n_bits), np.nan, dtype=np.float32)
    errors: dict[int, str] = {}
    for i, smi in enumerate(smiles_list):
        try:
            out[i] = ecfp_one(smi, radius=radius, n_bits=n_bits, counts=counts)
        except ValueError as err:
            errors[i] = str(err)
    return out, errors


def _as_list(smiles_list: Sequence[str]) -> list[str]:
    if isinstance(smiles_list, str):
        raise TypeError(f"expected a list of SMILES, got the single string {smiles_list!r}; "
                        "wrap it in a list")
    return list(smiles_list)


# ----------------------------------------------------------------------------- ChemBERTa

class SmilesEncoderError(ValueError):
    """A SMILES language model that cannot be loaded; the message says how to provide one."""


_HOW = ("Pass the folder of a downloaded ChemBERTa (e.g. seyonec/ChemBERTa-zinc-base-v1 saved "
        "with `AutoModel.from_pretrained(name).save_pretrained(folder)` and "
        "`AutoTokenizer.from_pretrained(name).save_pretrained(folder)` on a machine with internet "
        "access) holding config.json, the weights and the tokenizer files. priorlab never "
        "downloads weights; for a test model without weights use build_tiny_roberta(folder).")


class SmilesEncoder:
    """A frozen RoBERTa-family SMILES model (ChemBERTa) loaded from a local folder.

    ``encode`` returns one vector per molecule: the mean of the last hidden state over the
    molecule's real tokens (the attention mask; ``<s>`` and ``</s>`` included), or the ``<s>``
    token's state with ``pool="cls"``. The model runs in eval mode without gradients, so the
    same SMILES always gives the same vector whatever else is in its batch.

    SMILES longer than ``max_length`` tokens are truncated; their row indices and token counts
    are in ``last_truncated`` after each call, and one warning lists them.
    """

    def __init__(self, path: str | Path, *, max_length: int | None = None,
                 device: str = "cpu"):
        import torch

        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise SmilesEncoderError(f"SMILES model path {str(self.path)!r} is not a folder. {_HOW}")
        config_file = self.path / "config.json"
        if not config_file.is_file():
            raise SmilesEncoderError(f"SMILES model path {str(self.path)!r} has no config.json. {_HOW}")
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        try:
            config = AutoConfig.from_pretrained(self.path, local_files_only=True)
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        except Exception as err:  # any loader failure: say how to provide a model
            raise SmilesEncoderError(f"could not load a SMILES model from {str(self.path)!r}: "
                                     f"{err}. {_HOW}") from err
        if self.tokenizer.pad_token_id is None:
            raise SmilesEncoderError(f"the tokenizer in {str(self.path)!r} has no padding token; "
                                     f"batches cannot be padded. {_HOW}")
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)
        self.max_length = self._max_length(config, max_length)
        self.name = f"{self.path.name}-{hashlib.sha256(config_file.read_bytes()).hexdigest()[:8]}"
        """Folder name and a short hash of its config.json, for caches and logs."""
        self.last_truncated: dict[int, int] = {}
        """Row index -> token count (before truncation) of the molecules the last call cut."""

    def _max_length(self, config, requested: int | None) -> int:
        limit = int(getattr(config, "max_position_embeddings", 0) or 0)
        if limit and config.model_type in ROBERTA_TYPES:
            limit -= int(config.pad_token_id if config.pad_token_id is not None else 1) + 1
        tok_limit = int(self.tokenizer.model_max_length)
        if tok_limit < 1_000_000:  # tokenizers without a limit report ~1e30
            limit = min(limit, tok_limit) if limit else tok_limit
        if not limit:
            raise SmilesEncoderError(f"cannot tell the maximum sequence length of {str(self.path)!r}; "
                                     "pass max_length=")
        if requested is not None:
            if requested < 3:
                raise ValueError(f"max_length={requested}: a molecule needs at least 3 tokens "
                                 "(<s>, an atom, </s>)")
            limit = min(limit, int(requested))
        return limit

    @property
    def dim(self) -> int:
        """Width of one molecule's vector (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    def encode(self, smiles_list: Sequence[str], batch_size: int = 32,
               pool: str = "mean") -> np.ndarray:
        """(n, hidden) float32 embeddings of ``smiles_list`` (see the class docstring)."""
        import torch

        if pool not in ("mean", "cls"):
            raise ValueError(f"pool={pool!r}: choose 'mean' (over real tokens) or 'cls' (<s>)")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: use >= 1")
        smiles_list = _as_list(smiles_list)
        bad = [i for i, s in enumerate(smiles_list) if not isinstance(s, str) or not s.strip()]
        if bad:
            raise ValueError(f"rows {bad[:10]} hold no SMILES ({len(bad)} in all): drop failed or "
                             "missing molecules before encoding")
        self.last_truncated = {}
        out = np.zeros((len(smiles_list), self.dim), dtype=np.float32)
        for start in range(0, len(smiles_list), batch_size):
            chunk = smiles_list[start:start + batch_size]
            # verbose=False: the length probe itself would warn for every long SMILES.
            lengths = [len(ids) for ids in self.tokenizer(chunk, verbose=False)["input_ids"]]
            for j, n_tok in enumerate(lengths):
                if n_tok > self.max_length:
                    self.last_truncated[start + j] = n_tok
            batch = self.tokenizer(chunk, padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            ids = batch["input_ids"].to(self.device)
            mask = batch["attention_mask"].to(self.device)
            with torch.no_grad():
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            if pool == "cls":
                vec = hidden[:, 0]                                              # (B, H)
            else:
                m = mask.unsqueeze(-1).to(hidden.dtype)                         # (B, T, 1)
                vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)             # (B, H)
            out[start:start + len(chunk)] = vec.cpu().numpy()
        if self.last_truncated:
            shown = ", ".join(f"row {i} ({n} tokens)" for i, n in list(self.last_truncated.items())[:10])
            warnings.warn(f"{len(self.last_truncated)} SMILES longer than {self.max_length} tokens "
                          f"were truncated for {self.name}: {shown}; their embeddings ignore the "
                          "tail (see SmilesEncoder.last_truncated)", stacklevel=2)
        return out


# A SMILES token regex for the tiny test tokenizer: two-letter elements first so "Cl" is one
# token; only pairs that cannot be an atom followed by an aromatic atom (no "Sc", "Cn", "Co").
_SMILES_TOKEN = r"Cl|Br|Na|Li|Mg|Ca|Zn|Fe|Cu|Si|Se|se|As|Al|@@|."
_TINY_TOKENS = (["C", "N", "O", "S", "P", "F", "I", "B", "K", "H", "Cl", "Br",
                 "c", "n", "o", "s", "p", "b", "se",
                 "Na", "Li", "Mg", "Ca", "Zn", "Fe", "Cu", "Si", "Se", "As", "Al"]
                + list("()[]=#-+\\/:.@*%") + ["@@"] + list("0123456789"))


def build_tiny_roberta(folder: str | Path, *, hidden: int = 32, layers: int = 2, heads: int = 2,
                       seed: int = 0, max_length: int = 128) -> Path:
    """Write a tiny randomly initialised RoBERTa + SMILES tokenizer to ``folder``; return it.

    The tokenizer is a word-level vocabulary of SMILES tokens (atoms, bonds, ring digits,
    brackets; anything else is ``<unk>``) that adds ``<s> ... </s>`` like ChemBERTa's. The
    folder loads with :class:`SmilesEncoder` exactly as a real checkpoint does. The weights are
    random (seeded): embeddings from it exercise code paths, and mean nothing chemically.
    """
    import torch
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    if hidden % heads:
        raise ValueError(f"hidden={hidden} must be a multiple of heads={heads}")
    folder = Path(folder)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]  # RoBERTa's ids 0-3
    vocab = {tok: i for i, tok in enumerate(specials + _TINY_TOKENS + ["<mask>"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_SMILES_TOKEN), behavior="isolated")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
        sep_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
        model_max_length=max_length)
    config = RobertaConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=2 * hidden,
        max_position_embeddings=max_length + vocab["<pad>"] + 1, type_vocab_size=1,
        pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RobertaModel(config)
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


# ----------------------------------------------------------------------------- feature sets

def parse_feature_set(spec: str) -> tuple[str, ...]:
    """``"chemberta+midi"`` -> ``("chemberta", "midi")``; the order is the concatenation order."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"feature set {spec!r} is empty: give names from {list(FEATURE_SETS)} "
                         "joined by '+', e.g. 'chemberta+midi'")
    parts = tuple(p.strip().lower() for p in spec.split("+"))
    if any(not p for p in parts):
        raise ValueError(f"feature set {spec!r} has an empty part: join names with single '+', "
                         "e.g. 'ecfp+midi'")
    unknown = [p for p in parts if p not in FEATURE_SETS]
    if unknown:
        raise ValueError(f"unknown feature set name(s) {unknown} in {spec!r}; valid names: "
                         f"{list(FEATURE_SETS)}")
    dup = sorted({p for p in parts if parts.count(p) > 1})
    if dup:
        raise ValueError(f"feature set {spec!r} names {dup} more than once; each block enters once")
    return parts


def concat_features(blocks: Mapping[str, np.ndarray], order: Sequence[str]) -> np.ndarray:
    """The blocks named in ``order`` side by side: (n, sum of widths) float32.

    Every block must be (n, d_i) with the same n, rows in the same molecule order.
    """
    if isinstance(order, str):
        order = parse_feature_set(order)
    if not order:
        raise ValueError("order is empty: name at least one feature block")
    missing = [name for name in order if name not in blocks]
    if missing:
        raise KeyError(f"feature block(s) {missing} were not computed; have {sorted(blocks)}")
    arrays = []
    for name in order:
        a = np.asarray(blocks[name], dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"feature block {name!r} has shape {a.shape}; expected (n_molecules, d)")
        arrays.append(a)
    rows = {name: a.shape[0] for name, a in zip(order, arrays)}
    if len(set(rows.values())) > 1:
        raise ValueError(f"feature blocks disagree on the number of molecules: {rows}; compute "
                         "every block for the same rows in the same order")
    return np.concatenate(arrays, axis=1)


def finite_rows(features: np.ndarray) -> np.ndarray:
    """(n,) bool: rows without nan/inf, i.e. the molecules every block could featurise."""
    a = np.asarray(features)
    if a.ndim != 2:
        raise ValueError(f"features have shape {a.shape}; expected (n_molecules, d)")
    return np.isfinite(a).all(axis=1)
