"""The seed benchmark's models under kiln: the attention function and the TransformerLM, forward and
gradients against eager, with nothing left to eager; and a compiled AdamW training step."""
import copy
import dataclasses

import torch
from conftest import StatsWatch, assert_same, run_compiled

from kiln.models import attention, make_model, make_tokens
from kiln.models import transformer as tlm


def _assert_nothing_fell_back(delta):
    assert delta["calls"] > 0, delta
    assert delta["fallback_ops"] == {}, f"ops ran eagerly: {delta['fallback_ops']}"
    assert delta["eager_islands"] == 0, delta
    assert delta["eager_calls"] == 0, delta
    assert delta["graphs_failed"] == 0, delta


def test_seed_attention_forward_and_grad():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 33, 16, generator=g).requires_grad_() for _ in range(3))
    _, _, delta = run_compiled(attention, q, k, v, grad=True, rtol=1e-5, atol=1e-5)
    _assert_nothing_fell_back(delta)
    # one forward, one backward, and the kernel that proved the causal mask for the attention rewrite
    assert delta["attention_rewrites"] == 1
    # a cached proof, or one made earlier in this process, skips it
    assert delta.get("mask_checks_compiled", 0) <= 1, delta
    assert delta["graphs_compiled"] == 2 + delta.get("mask_checks_compiled", 0), delta


def test_seed_attention_float64_inference():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 20, 8, generator=g, dtype=torch.float64) for _ in range(3))
    _, _, delta = run_compiled(attention, q, k, v)
    _assert_nothing_fell_back(delta)


# Between "tiny" and the seed model: the same code paths at sizes that are not powers of two.
MID = dataclasses.replace(tlm.CONFIGS["tiny"], vocab_size=500, context_length=96, d_model=96, num_layers=2,
                          num_heads=6, d_ff=256, batch=3, seq=40)


def _model_and_tokens(cfg, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = tlm.BasicsTransformerLM(cfg)
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, cfg.vocab_size, (cfg.batch, cfg.seq), generator=gen)
    return model, tokens


def _check_lm(model, tokens, *, rtol, atol):
    """Compiles the model, compares logits and every parameter's gradient with eager; returns the stats delta."""
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="kiln")
    params = [p for p in model.parameters()]
    want = model(tokens)
    cot = torch.randn(want.shape, generator=torch.Generator().manual_seed(7))
    want_grads = torch.autograd.grad(want, params, cot)
    with StatsWatch() as w:
        got = compiled(tokens)
        got_grads = torch.autograd.grad(got, params, cot)
    assert_same(got, want, rtol=rtol, atol=atol, what="logits")
    names = [n for n, _ in model.named_parameters()]
    for name, a, b in zip(names, got_grads, want_grads):
        assert_same(a, b, rtol=rtol, atol=atol, what=f"grad {name}")
    return w.delta


def test_transformer_tiny_forward_and_grad():
    model = make_model("tiny")
    delta = _check_lm(model, make_tokens("tiny"), rtol=1e-5, atol=1e-5)
    # the whole model is one forward and one backward graph, plus the graph that proved the causal
    # mask (built the same way in every layer: proved once, or not at all when this process or the
    # rewrite cache already had the proof)
    assert delta.get("mask_checks_compiled", 0) <= 1, delta
    assert delta["graphs_compiled"] == 2 + delta.get("mask_checks_compiled", 0), delta
    assert delta["attention_rewrites"] == model.cfg.num_layers, delta  # every layer's attention is fused
    _assert_nothing_fell_back(delta)


def test_transformer_mid_size_forward_and_grad():
    model, tokens = _model_and_tokens(MID)
    delta = _check_lm(model, tokens, rtol=1e-5, atol=5e-5)
    _assert_nothing_fell_back(delta)


def _lm_loss(logits, targets):
    """Mean negative log-likelihood written with ops kiln lowers (no gather / nll_loss)."""
    logp = logits.log_softmax(-1)
    hit = torch.arange(logits.shape[-1]) == targets[..., None]
    return -torch.where(hit, logp, 0.0).sum(-1).mean()


def test_adamw_training_step_matches_eager():
    model_e = make_model("tiny")
    model_k = copy.deepcopy(model_e)
    tokens = make_tokens("tiny")
    targets = torch.roll(tokens, -1, 1)
    opt_e = torch.optim.AdamW(model_e.parameters(), lr=1e-2, weight_decay=0.1)
    opt_k = torch.optim.AdamW(model_k.parameters(), lr=1e-2, weight_decay=0.1)

    def step(model, opt, tokens, targets):
        opt.zero_grad(set_to_none=True)
        loss = _lm_loss(model(tokens), targets)
        loss.backward()
        opt.step()
        return loss.detach()

    compiled_step = torch.compile(step, backend="kiln")
    with StatsWatch() as w:
        for i in range(2):
            loss_e = step(model_e, opt_e, tokens, targets)
            loss_k = compiled_step(model_k, opt_k, tokens, targets)
            torch.testing.assert_close(loss_k, loss_e, rtol=1e-5, atol=1e-5, msg=f"loss at step {i}")
    # The model's forward and backward run in kiln; AdamW's update may leave ops to eager
    # (prims.fma from the lerp decomposition, when this was written) but must still match.
    assert w.delta["calls"] > 0, w.delta
    for (name, pe), pk in zip(model_e.named_parameters(), model_k.parameters()):
        torch.testing.assert_close(pk, pe, rtol=1e-5, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    for pe, pk in zip(model_e.parameters(), model_k.parameters()):
        se, sk = opt_e.state[pe], opt_k.state[pk]
        torch.testing.assert_close(sk["exp_avg"], se["exp_avg"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sk["exp_avg_sq"], se["exp_avg_sq"], rtol=1e-5, atol=1e-8)
