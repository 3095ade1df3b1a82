import pytest
import torch

from hyena_glt.config import HyenaGLTConfig
from hyena_glt.errors import InputError, UsageError
from hyena_glt.model import HyenaGLTForTask, HyenaGLTModel

SMALL = dict(d_model=32, n_layers=2, d_inner=64, n_heads=2, filter_dim=16, filter_scale=64, ngram_buckets=64)


def make(task="lm", num_outputs=None, **overrides):
    torch.manual_seed(0)
    return HyenaGLTForTask(HyenaGLTConfig(**{**SMALL, **overrides}), task, num_outputs).eval()


def ids(batch, length, seed=0):
    return torch.randint(5, 10, (batch, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("patcher", ["none", "static:4", "static:3"])
@pytest.mark.parametrize("attn", [[], [1]])
def test_causal_output_ignores_the_future(patcher, attn):
    model = make("lm", patcher=patcher, attn_layers=attn, pooling="attention")
    x = ids(1, 41)
    y = x.clone()
    y[:, 22:] = ids(1, 19, seed=1)
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.allclose(a[:, :22], b[:, :22], atol=1e-5)
    assert not torch.allclose(a[:, 22:], b[:, 22:], atol=1e-5)


@pytest.mark.parametrize("patcher", ["none", "static:4"])
def test_bidirectional_output_sees_the_future(patcher):
    model = make("token_classification", 3, patcher=patcher, bidirectional=True)
    x = ids(1, 41)
    y = x.clone()
    y[:, 22:] = ids(1, 19, seed=1)
    with torch.no_grad():
        a, b = model(x), model(y)
    assert not torch.allclose(a[:, :22], b[:, :22], atol=1e-5)


CASES = [
    ("lm", None, dict(patcher="none")),
    ("lm", None, dict(patcher="static:4", pooling="attention", attn_layers=[0])),
    ("classification", 3, dict(patcher="none", bidirectional=True, attn_layers=[1])),
    ("multilabel", 2, dict(patcher="static:3", bidirectional=True)),
    ("regression", 2, dict(patcher="static:4", bidirectional=True, pooling="attention")),
    ("token_classification", 4, dict(patcher="static:2", local_d_inner=16, local_layers=2)),
]


@pytest.mark.parametrize("task, n, overrides", CASES)
def test_padded_batch_equals_records_one_by_one(task, n, overrides):
    model = make(task, n, **overrides)
    lengths = [37, 20, 9, 1]
    x = ids(len(lengths), max(lengths))
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        batched = model(x, mask)
        for i, n_i in enumerate(lengths):
            alone = model(x[i:i + 1, :n_i])
            got = batched[i, :n_i] if model.per_unit else batched[i]
            assert torch.allclose(got, alone[0], atol=1e-5), (i, (got - alone[0]).abs().max())


@pytest.mark.parametrize("task, n, overrides", CASES)
def test_gradients_reach_every_parameter(task, n, overrides):
    model = make(task, n, **overrides).train()
    x = ids(2, 30)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[1, 21:] = False
    logits = model(x, mask)
    labels = {"lm": x, "classification": torch.tensor([0, 2]), "multilabel": torch.tensor([[1, 0], [1, 1]]),
              "regression": torch.tensor([[0.5, float("nan")], [1.0, -2.0]]),
              "token_classification": torch.randint(0, 4, (2, 30))}[task]
    loss = model.loss(logits, labels, mask)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_output_shapes_and_embeddings():
    model = make("classification", 3, patcher="static:4")
    x = ids(2, 18)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[1, 10:] = False
    with torch.no_grad():
        assert model(x, mask).shape == (2, 3)
        assert model.embed(x, mask).shape == (2, 32)
        assert model.embed(x, mask, pool="cls").shape == (2, 32)
        assert model.embed(x, mask, pool="none").shape == (2, 18, 32)
        assert model.embed(x, mask, pool="none", layer=1).shape == (2, 18, 32)
        assert model.embed(x, mask, layer=0).shape == (2, 32)
        out = model.backbone(x, mask)
    assert out.patch_lengths.tolist() == [[4, 4, 4, 4, 2], [4, 4, 2, 0, 0]]
    assert out.patch_mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    assert out.patch_states.shape == (2, 5, 32) and out.unit_states.shape == (2, 18, 32)
    with pytest.raises(UsageError, match="layer=5 is outside"):
        model.embed(x, mask, layer=5)
    with pytest.raises(InputError, match="patch lengths do not add up"):
        model.backbone(x, mask, patch_lengths=torch.tensor([[18], [9]]))


def test_plain_model_has_no_patch_machinery():
    model = HyenaGLTModel(HyenaGLTConfig(**SMALL))
    names = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert names == {"embed", "layers", "norm"}


def test_mean_pooling_is_masked_mean_of_unit_states():
    model = make("regression", 1, patcher="none", bidirectional=True)
    x = ids(1, 12)
    with torch.no_grad():
        states = model.backbone(x).unit_states
        assert torch.allclose(model.embed(x), states.mean(1), atol=1e-6)


def test_bad_tasks():
    with pytest.raises(UsageError, match="must be causal"):
        make("lm", bidirectional=True)
    with pytest.raises(UsageError, match="unknown task 'segmentation'"):
        make("segmentation", 2)
    with pytest.raises(UsageError, match="at least 2 classes"):
        make("classification", 1)


def test_rc_average_logits_flips_per_unit_outputs():
    from hyena_glt.model import rc_average_logits
    from hyena_glt.tokenizers import get_tokenizer

    model = make("token_classification", 2, patcher="none", bidirectional=True)
    x = torch.randint(5, 9, (2, 11), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[1, 6:] = False
    tok = get_tokenizer("nucleotide")
    with torch.no_grad():
        avg = rc_average_logits(model, x, mask, tok)
        rc = tok.reverse_complement_batch(x, mask.sum(1))
        assert tok.decode(rc[1, :6]) == tok.decode(x[1, :6]).translate(str.maketrans("ACGT", "TGCA"))[::-1]
        want1 = (model(x[1:, :6]) + model(rc[1:, :6]).flip(1)) / 2
    assert torch.allclose(avg[1, :6], want1[0], atol=1e-5)
    seq_model = make("classification", 2, patcher="static:4", bidirectional=True)
    with torch.no_grad():
        both = rc_average_logits(seq_model, x, mask, tok)
        assert torch.allclose(both, (seq_model(x, mask) + seq_model(rc, mask)) / 2, atol=1e-6)


@pytest.mark.parametrize("sizes, vocab", [([3, 4, 5, 6, 7, 8], 12), ([2, 5], 260), ([1], 5), ([8, 12], 2**20)])
def test_ngram_buckets_follow_the_hash_definition(sizes, vocab):
    """Bucket of the k-gram ending at t: h = Σ_{i<k} (id[t-i] + 1)·BASE^(k-1-i) mod MOD (ids before the start
    count as 0), then (h·(2k+1) + k) mod MOD mod buckets, computed here position by position with Python
    integers. Trained models' n-gram embeddings depend on these exact buckets."""
    from hyena_glt.model.hyena_glt import _HASH_BASE, _HASH_MOD, UnitEmbedding

    embedding = UnitEmbedding(vocab, 8, sizes, 1021)
    x = torch.randint(0, vocab, (2, 40), generator=torch.Generator().manual_seed(1))
    got = embedding.ngram_buckets(x)
    rows = x.tolist()
    want = [[[(sum((rows[b][t - i] + 1 if t - i >= 0 else 1) * _HASH_BASE ** (k - 1 - i) for i in range(k))
               % _HASH_MOD * (2 * k + 1) + k) % _HASH_MOD % 1021 for k in sizes]
             for t in range(40)] for b in range(2)]
    assert got.tolist() == want


@pytest.mark.parametrize("task", ["lm", "classification"])
def test_megabase_inference_path_equals_autograd_path(monkeypatch, task):
    """Inference in pieces (blocks updating the residual stream in place, embeddings and the final norm by row
    chunks, spectra per channel group) gives the outputs of the plain autograd forward."""
    import hyena_glt.model.hyena as hyena
    import hyena_glt.model.hyena_glt as glt

    model = make(task, None if task == "lm" else 3, ngram_sizes=[2, 3])
    x = ids(2, 300)
    want = model(x).detach()
    monkeypatch.setattr(glt, "_CHUNK_ROWS", 70)  # n-gram lookups and the final norm in chunks of 35 positions
    monkeypatch.setattr(hyena, "_GROUP_ELEMENTS", 2 * 300 * 3 * 4)  # every layer in pieces, channel groups
    monkeypatch.setattr(hyena, "_PROJECT_BLOCK", 64)
    monkeypatch.setattr(hyena, "_NARROW_D", 0)
    with torch.no_grad():
        got = model(x)
        hidden = model.backbone(x, output_hidden_states=True).hidden_states
    assert torch.allclose(got, want, atol=1e-5)
    # with hidden states asked for, no block may update its input in place: each layer's state stays as it was
    layers = model.backbone.layers
    with torch.no_grad():
        assert torch.allclose(layers[0](hidden[0].clone()), hidden[1], atol=1e-6)
        assert torch.allclose(layers[1](hidden[1].clone()), hidden[2], atol=1e-6)
