import pytest
import torch

from fmlc.models import FMLC, ModelConfig, build_model
from fmlc.models.layers import GGNN, LabelAttention

B, T, L, V = 3, 9, 5, 50


def _cfg(model: str = "fmlc") -> ModelConfig:
    return ModelConfig(model=model, vocab_size=V, n_labels=L, embed_dim=16, hidden=8, attn_dim=12, graph_dim=10,
                       filters=14, embed_dropout=0.0, attn_dropout=0.0, graph_dropout=0.0)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    ids = torch.randint(2, V, (B, T))
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 4:] = False
    ids[~mask] = 0
    return ids, mask


def test_label_attention_shapes_and_masking() -> None:
    att = LabelAttention(dim=6, n_labels=L, attn_dim=4)
    h = torch.randn(B, T, 6)
    _, mask = _batch()
    v, a = att(h, mask)
    assert v.shape == (B, L, 6) and a.shape == (B, L, T)
    torch.testing.assert_close(a.sum(-1), torch.ones(B, L))
    assert a[1, :, 4:].abs().max().item() == 0.0  # padding gets no attention


def test_ggnn_keeps_shape_and_mixes_neighbours() -> None:
    torch.manual_seed(0)
    ggnn = GGNN(dim=7, steps=2, dropout=0.0).eval()
    h = torch.randn(2, L, 7)
    chain = torch.eye(L) * 0.75
    chain[0, 1] = chain[1, 0] = 0.25
    out = ggnn(h, chain)
    assert out.shape == h.shape
    h2 = h.clone()
    h2[:, 1] += 1.0  # perturb node 1
    delta = (ggnn(h2, chain) - out).abs().sum(-1)[0]
    assert delta[0] > 0  # node 0 hears node 1 through the edge
    assert delta[3] == 0  # node 3 has no edge to node 1


def test_identity_adjacency_removes_neighbour_mixing() -> None:
    torch.manual_seed(0)
    ggnn = GGNN(dim=7, steps=2, dropout=0.0).eval()
    h = torch.randn(2, L, 7)
    h2 = h.clone()
    h2[:, 2] += 1.0
    delta = (ggnn(h2, torch.eye(L)) - ggnn(h, torch.eye(L))).abs().sum(-1)
    assert delta[:, 2].min() > 0
    assert delta[:, [0, 1, 3, 4]].max() == 0


@pytest.mark.parametrize("name", ["fmlc", "bigru-lwan", "caml", "zacnn", "linear"])
def test_every_model_shapes_and_padding_invariance(name: str) -> None:
    torch.manual_seed(0)
    net = build_model(_cfg(name)).eval()
    ids, mask = _batch()
    out = net(ids, mask)
    assert out.logits.shape == (B, L) and out.attention.shape == (B, L, T)
    # The same document padded further must score the same: padding must not leak in.
    wider = torch.cat([ids, torch.zeros(B, 4, dtype=torch.long)], dim=1)
    wider_mask = torch.cat([mask, torch.zeros(B, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(net(wider, wider_mask).logits, out.logits, atol=1e-5, rtol=1e-4)


def test_fmlc_graph_changes_output() -> None:
    torch.manual_seed(0)
    net: FMLC = build_model(_cfg("fmlc")).eval()
    ids, mask = _batch()
    identity = net(ids, mask).logits
    adj = torch.full((L, L), 0.25 / (L - 1))
    adj.fill_diagonal_(0.75)
    net.set_adjacency(adj)
    assert not torch.allclose(net(ids, mask).logits, identity)


def test_config_validation_says_what_to_do() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        ModelConfig(model="bert", vocab_size=10, n_labels=2)
    with pytest.raises(ValueError, match="embed_dropout"):
        ModelConfig(model="fmlc", vocab_size=10, n_labels=2, embed_dropout=1.5)


def test_length_chunks_respect_batch_size_and_token_budget() -> None:
    from fmlc.batching import length_chunks

    lengths = [5, 250, 7, 6, 240, 8, 5, 9]
    chunks = length_chunks(lengths, batch_size=4, max_tokens=500)
    assert sorted(i for c in chunks for i in c) == list(range(len(lengths)))
    for chunk in chunks:
        assert len(chunk) <= 4
        assert len(chunk) * max(lengths[i] for i in chunk) <= 500 or len(chunk) == 1
    # the two long documents do not drag short ones into 250-token padding
    long_chunks = [c for c in chunks if max(lengths[i] for i in c) >= 240]
    assert all(set(c) <= {1, 4} for c in long_chunks)
    assert length_chunks(lengths, batch_size=3, length_aware=False) == [[0, 1, 2], [3, 4, 5], [6, 7]]
