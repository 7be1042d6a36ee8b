"""Model loading by path, default chat template, dtype, LoRA with merge-and-save (tiny random models)."""

import shutil
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig, Qwen2Config

from posttrain.errors import UserError
from posttrain.models import DEFAULT_CHAT_TEMPLATE, apply_lora, load_causal_lm, load_tokenizer, save_model
from posttrain.hub import PROBE_SECONDS
from posttrain.models.loading import resolve_device
from posttrain.models.reward_model import REWARD_MODEL_HINT, load_reward_model
from tiny_tokenizers import chatml_tokenizer, plain_tokenizer, save_tokenizer

CONFIGS = {
    "llama": lambda v: LlamaConfig(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128),
    "qwen2": lambda v: Qwen2Config(vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128),
    "gpt2": lambda v: GPT2Config(vocab_size=v, n_embd=32, n_layer=2, n_head=4, n_positions=128),
}


def _save_tiny(path, arch, tokenizer):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIGS[arch](len(tokenizer)))
    model.save_pretrained(path)
    save_tokenizer(tokenizer, path)
    return str(path)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_load_by_path_matches_plain_transformers(tmp_path, arch):
    path = _save_tiny(tmp_path, arch, chatml_tokenizer())
    model = load_causal_lm(path)
    ref = AutoModelForCausalLM.from_pretrained(path)
    ids = torch.tensor([[1, 5, 9, 3]])
    assert torch.equal(model(ids).logits, ref(ids).logits)
    assert load_tokenizer(path).chat_template == chatml_tokenizer().chat_template


def test_tokenizer_without_template_gets_default_and_pad(tmp_path):
    path = _save_tiny(tmp_path, "gpt2", plain_tokenizer())
    tok = load_tokenizer(path)
    assert tok.chat_template == DEFAULT_CHAT_TEMPLATE and tok.pad_token_id is not None
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], tokenize=False)
    assert text == "<|user|>\nhi\n<|assistant|>\nyo<|endoftext|>\n"


def test_dtype_option(tmp_path):
    path = _save_tiny(tmp_path, "llama", chatml_tokenizer())
    assert load_causal_lm(path, dtype="bfloat16").dtype == torch.bfloat16


def test_a_device_torch_does_not_know_is_a_user_error():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="device=tpu is not a device torch knows; use device=auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="model path not found"):
        load_causal_lm(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        load_causal_lm(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="chat_template file not found"):
        load_tokenizer(_save_tiny(tmp_path / "m", "llama", chatml_tokenizer()), chat_template=str(tmp_path / "t.jinja"))


def test_bad_paths_name_the_option_that_gave_them(tmp_path):
    missing = str(tmp_path / "runs" / "nope")
    with pytest.raises(UserError) as info:
        load_causal_lm(missing, option="ref_model_path")
    assert str(info.value) == (f"ref_model_path not found: {missing}; use ref_model_path=embedded, a local directory, "
                               "or a hub id like Qwen/Qwen2.5-0.5B")
    with pytest.raises(UserError) as info:
        load_reward_model(missing, None, option="reward_model", hint=REWARD_MODEL_HINT)
    assert str(info.value) == f"reward_model path not found: {missing}; {REWARD_MODEL_HINT}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="^critic_model directory .* has no config.json; point critic_model= at"):
        load_tokenizer(str(tmp_path / "empty"), option="critic_model")


@pytest.mark.parametrize("targets", [["all-linear"], ["q_proj", "v_proj"]])
def test_lora_trains_adapters_only_and_merges(tmp_path, targets):
    tok = chatml_tokenizer()
    path = _save_tiny(tmp_path / "base", "llama", tok)
    model = apply_lora(load_causal_lm(path), r=4, alpha=8, dropout=0.0, target_modules=targets)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    if targets == ["q_proj", "v_proj"]:
        assert all(("q_proj" in n or "v_proj" in n) for n in trainable)
    with torch.no_grad():  # make the adapters non-zero so merging matters
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    ids = torch.tensor([[2, 7, 11, 4, 6]])
    expected = model(ids).logits
    save_model(model, load_tokenizer(path), tmp_path / "final")
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert not any("lora" in n for n, _ in plain.named_parameters())
    assert torch.allclose(plain(ids).logits, expected, atol=1e-5)
    assert hasattr(model, "peft_config")  # the live model keeps its adapters
    AutoTokenizer.from_pretrained(tmp_path / "final")


def test_bad_lora_targets(tmp_path):
    path = _save_tiny(tmp_path, "llama", chatml_tokenizer())
    with pytest.raises(UserError, match="lora_target_modules"):
        apply_lora(load_causal_lm(path), r=4, alpha=8, dropout=0.0, target_modules=["nonexistent_proj"])


def _cache_as_hub_model(cache, repo_id: str, model_dir: str) -> None:
    """Lay `model_dir`'s files out as huggingface_hub caches a download of `repo_id` (refs/main -> a snapshot)."""
    commit = "0" * 40
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)


def test_an_unreachable_hub_fails_at_once_with_what_to_do(hub):
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        load_tokenizer("nobody/does-not-exist")
    assert time.monotonic() - start < 2 * PROBE_SECONDS
    assert str(info.value) == ("model 'nobody/does-not-exist' was not found locally and the Hugging Face hub "
                               "(http://127.0.0.1:9) could not be reached; offline? set HF_HUB_OFFLINE=1 (models in the "
                               "Hugging Face cache only) or give a local directory")


def test_hf_hub_offline_tries_no_network_and_says_so(hub, monkeypatch):
    monkeypatch.setattr(hub, "ENDPOINT", "http://192.0.2.1:9")  # would hang (TEST-NET): must not be tried
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    start = time.monotonic()
    with pytest.raises(UserError, match="neither a local directory nor in the Hugging Face cache, and HF_HUB_OFFLINE=1 allows"):
        load_causal_lm("nobody/does-not-exist", option="reference")
    assert time.monotonic() - start < 1


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "unreachable"])
def test_a_cached_hub_model_loads_without_the_hub(hub, monkeypatch, tmp_path, offline):
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", offline)
    source = _save_tiny(tmp_path / "src", "llama", chatml_tokenizer())
    _cache_as_hub_model(hub.HF_HUB_CACHE, "acme/tiny", source)
    model, expected = load_causal_lm("acme/tiny"), AutoModelForCausalLM.from_pretrained(source)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))
    assert load_tokenizer("acme/tiny").get_vocab() == AutoTokenizer.from_pretrained(source).get_vocab()
