"""ClippedSGD: SGD on gradients clipped to a total norm, under both trainers' use of the optimizer."""
import pytest
import torch

from cascades.engine import ClippedSGD


def _step(optimizer_cls, grads, **kwargs):
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    optimizer_cls(params, lr=1.0, **kwargs).step()
    return [-p.detach() for p in params]  # lr 1 from zero: the applied update is -grad


def test_large_gradients_are_scaled_to_the_norm_together():
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0, 4.0]])]  # total norm 5
    update = _step(ClippedSGD, grads, max_grad_norm=1.0)
    torch.testing.assert_close(update[0], torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(update[1], torch.tensor([[0.0, 0.8]]))


def test_small_gradients_are_plain_sgd():
    grads = [torch.tensor([0.3, -0.4]), torch.tensor([0.1])]
    for ours, sgd in zip(_step(ClippedSGD, grads, max_grad_norm=10.0), _step(torch.optim.SGD, grads)):
        torch.testing.assert_close(ours, sgd)


def test_parameters_without_gradient_are_skipped_and_state_round_trips():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    a.grad = torch.full((2,), 10.0)
    opt = ClippedSGD([a, b], lr=0.1, momentum=0.9, max_grad_norm=1.0)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2))
    again = ClippedSGD([a, b], lr=0.1, momentum=0.9, max_grad_norm=1.0)
    again.load_state_dict(opt.state_dict())
    assert torch.equal(again.state[a]["momentum_buffer"], opt.state[a]["momentum_buffer"])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_max_norm_is_named(bad):
    with pytest.raises(ValueError, match="max_grad_norm must be > 0"):
        ClippedSGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, max_grad_norm=bad)
