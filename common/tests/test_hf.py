"""common/nn/hf.py: our GPT against Hugging Face GPT-2 and Llama with the same weights.

Randomly initialised transformers models (small configs, nothing downloaded) are copied into our
`GPT`; one block's output and the full logits must agree to float32 rounding. The max abs errors
are printed (`pytest -s`)."""

import pytest
import torch

from common.nn import hf as H
from common.nn.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
TOL = 1e-5


def gpt2():
    torch.manual_seed(0)
    c = transformers.GPT2Config(vocab_size=101, n_positions=32, n_embd=48, n_layer=2, n_head=4, bos_token_id=None,
                                eos_token_id=None, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    m = transformers.GPT2LMHeadModel(c).eval()
    with torch.no_grad():  # HF zero-initialises biases and sets LN to identity: perturb them so they count
        for name, p in m.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m


def llama(tie=False):
    torch.manual_seed(0)
    c = transformers.LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                 tie_word_embeddings=tie, rope_parameters={"rope_type": "default", "rope_theta": 500.0})
    m = transformers.LlamaForCausalLM(c).eval()
    with torch.no_grad():  # RMSNorm gains start at 1: perturb them so a mismapped norm shows
        for name, p in m.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return m


def compare(hf_model, ours, T=20):
    idx = torch.randint(0, hf_model.config.vocab_size, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = hf_model(idx, output_hidden_states=True)
        block0 = {}
        h = ours.blocks[0].register_forward_hook(lambda m, i, o: block0.setdefault("y", o))
        logits, _ = ours.eval()(idx)
        h.remove()
    return (block0["y"] - out.hidden_states[1]).abs().max().item(), (logits - out.logits).abs().max().item()


@pytest.mark.parametrize("make", [gpt2, llama, lambda: llama(tie=True)], ids=["gpt2", "llama", "llama_tied"])
def test_our_gpt_matches_transformers_with_copied_weights(make):
    hf = make()
    ours = H.gpt_from_hf(hf)
    err_block, err_logits = compare(hf, ours)
    print(f"\n{hf.config.model_type}: max abs error, block 0 output {err_block:.2e}, logits {err_logits:.2e}")
    assert err_block < TOL and err_logits < TOL


def test_config_mapping_reads_every_architecture_field():
    c = H.gpt_config_from_hf(gpt2().config)
    assert (c.pos, c.norm, c.mlp, c.bias, c.tie_weights) == ("learned", "layer", "gelu_tanh", True, True)
    c = H.gpt_config_from_hf(llama().config)
    assert (c.pos, c.norm, c.mlp, c.bias, c.n_kv_head, c.rope_base) == ("rope", "rms", "swiglu", False, 2, 500.0)
    with pytest.raises(ValueError, match="model_type"):
        H.family(transformers.BertConfig())


@pytest.mark.parametrize("cfg", [
    GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=32, bias=True, mlp="gelu_tanh"),
    GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_kv_head=1, n_embd=32, pos="rope", norm="rms",
              mlp="swiglu", tie_weights=False)], ids=["gpt2_style", "llama_style_mqa"])
def test_export_to_transformers_and_back(cfg):
    torch.manual_seed(0)
    ours = GPT(cfg).eval()
    hf = H.gpt_to_hf(ours)
    _, err = compare(hf, ours)
    assert err < TOL
    back = H.gpt_from_hf(hf)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), back.state_dict().values()))


def test_meta_layout_needs_the_rope_permutation():
    hf = llama()
    ours = H.gpt_from_hf(hf)
    cfg = ours.cfg
    hs, Hkv = cfg.n_embd // cfg.n_head, cfg.n_kv_head
    with torch.no_grad():
        for i in range(cfg.n_layer):  # rewrite q and k rows into Meta's adjacent-pair layout
            w = ours.blocks[i].attn.qkv.weight
            q, k = w[: cfg.n_embd], w[cfg.n_embd: cfg.n_embd + Hkv * hs]
            meta_q, meta_k = (t.view(n, 2, hs // 2, -1).transpose(1, 2).reshape(t.shape)
                              for t, n in ((q, cfg.n_head), (k, Hkv)))
            assert torch.equal(H.interleaved_to_half(meta_q, cfg.n_head), q)  # the permutation inverts it
            q.copy_(meta_q)
            k.copy_(meta_k)
    _, err_meta = compare(hf, ours)
    assert err_meta > 1e-2  # the same numbers, rotated in the other pairs: a different model
    with torch.no_grad():
        for i in range(cfg.n_layer):
            w = ours.blocks[i].attn.qkv.weight
            w[: cfg.n_embd] = H.interleaved_to_half(w[: cfg.n_embd].clone(), cfg.n_head)
            w[cfg.n_embd: cfg.n_embd + Hkv * hs] = H.interleaved_to_half(w[cfg.n_embd: cfg.n_embd + Hkv * hs].clone(),
                                                                          Hkv)
    _, err = compare(hf, ours)
    assert err < TOL
