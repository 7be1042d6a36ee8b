"""The hardware knobs of loading: the default dtype (float32 on CPU, bfloat16 on a CUDA GPU),
attn_implementation, QLoRA (load_in_4bit / load_in_8bit with bitsandbytes' CPU backend) and Liger, each
refused with one clear line where the GPU or the package is missing."""

import pytest
import torch

from conftest import sft_config
from posttrain.errors import ConfigError
from posttrain.models.hardware import LIGER_ERROR, has_package, weights_dtype
from posttrain.train.scaffold import load_model_for

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
IDS = torch.tensor([[2, 7, 11, 4, 6, 9]])


def test_the_default_dtype_is_float32_on_cpu_and_bfloat16_on_a_cuda_gpu(tiny_llama):
    assert sft_config().dtype is None
    assert weights_dtype(None, "cpu") == "float32" and weights_dtype("float16", "cpu") == "float16"
    assert next(load_model_for(sft_config(model=tiny_llama)).parameters()).dtype == torch.float32
    assert weights_dtype(None, "cuda") == ("bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32")


@CUDA
def test_on_cuda_the_default_loads_bfloat16(tiny_llama):
    model = load_model_for(sft_config(model=tiny_llama, device="cuda"))
    assert next(model.parameters()).dtype == torch.bfloat16 and next(model.parameters()).is_cuda


def test_attn_implementation_reaches_from_pretrained(tiny_llama):
    sdpa, eager = (load_model_for(sft_config(model=tiny_llama, attn_implementation=impl)) for impl in (None, "eager"))
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    with torch.no_grad():
        torch.testing.assert_close(eager(IDS).logits, sdpa(IDS).logits, atol=1e-5, rtol=0)


@pytest.mark.skipif(torch.cuda.is_available() and has_package("flash_attn"), reason="flash attention can run here")
def test_kernels_this_machine_cannot_run_are_refused_before_loading(tiny_llama):
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="^attn_implementation=flash_attention_2 needs a CUDA GPU, but the model runs on cpu; use attn"):
            load_model_for(sft_config(model=tiny_llama, attn_implementation="flash_attention_2"))
        with pytest.raises(ConfigError, match="^attn_implementation=flex_attention needs a CUDA GPU"):
            load_model_for(sft_config(model=tiny_llama, attn_implementation="flex_attention"))
    else:
        with pytest.raises(ConfigError, match="needs the flash-attn package, which is not installed: pip install flash-attn"):
            load_model_for(sft_config(model=tiny_llama, attn_implementation="flash_attention_2", device="cuda"))


@pytest.mark.skipif(torch.cuda.is_available() and has_package("liger_kernel"), reason="Liger can run here")
def test_liger_without_its_package_or_a_gpu_is_one_clear_line(tiny_llama):
    with pytest.raises(ConfigError) as info:
        load_model_for(sft_config(model=tiny_llama, use_liger_kernel=True))
    assert str(info.value) == LIGER_ERROR == "use_liger_kernel needs the liger-kernel package and a CUDA GPU: pip install 'posttrain[liger]'"


@CUDA
@pytest.mark.skipif(not has_package("liger_kernel"), reason="needs liger-kernel")
def test_liger_patches_the_model_and_keeps_its_logits(tiny_llama):
    plain = load_model_for(sft_config(model=tiny_llama, device="cuda", dtype="float32"))
    liger = load_model_for(sft_config(model=tiny_llama, device="cuda", dtype="float32", use_liger_kernel=True))
    assert "Liger" in type(liger.model.norm).__name__
    with torch.no_grad():
        torch.testing.assert_close(liger(IDS.cuda()).logits, plain(IDS.cuda()).logits, atol=1e-4, rtol=1e-4)


def test_quantized_loading_needs_lora(tiny_llama):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes")
    with pytest.raises(ConfigError, match=r"^load_in_4bit=true loads frozen quantized weights, which only LoRA adapters can train \(QLoRA\); set lora=true$"):
        load_model_for(sft_config(model=tiny_llama, load_in_4bit=True))
    with pytest.raises(ConfigError, match="^load_in_4bit and load_in_8bit are both set; choose one$"):
        load_model_for(sft_config(model=tiny_llama, load_in_4bit=True, load_in_8bit=True, lora=True))
