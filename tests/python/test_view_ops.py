"""View ops compiled by kiln: values, aliasing (view outputs are views of the inputs), gradients."""
import torch
from conftest import run_compiled


def _shape_views(x):
    """Views and reshapes of a (2, 3, 4, 5) tensor, each used in arithmetic so kiln computes through it."""
    y = x * 1.5 + 0.25  # keeps x's memory layout in eager: view() needs a contiguous y
    view = y.view if y.is_contiguous() else y.reshape
    return (
        view(6, 20), y.reshape(-1), y.reshape(2, -1, 5), y.permute(3, 1, 0, 2), y.transpose(1, 2),
        y.transpose(-1, 0).contiguous(), y.flatten(1, 2), y.flatten(), y.unflatten(-1, (5, 1)),
        y.unsqueeze(0), y.unsqueeze(-1), y.unsqueeze(2).expand(2, 3, 7, 4, 5), y[:, :1].squeeze(1),
        y[:, :, :1, :1].squeeze(), y.sum((1, 2)).t(), y.mT, view(2, 3, 20)[:, :, 3:17],
        y.reshape(6, 20).t().reshape(20, 6), (y.permute(0, 2, 1, 3) * x.transpose(1, 2)).reshape(2, 4, 15),
        x.expand(3, 2, 3, 4, 5) * 2, torch.cat([y, x], 1), torch.cat([y, x * 2], -1),
        torch.cat([y[:, :1], x, y[:, 1:]], 1), torch.stack([x, y], 2), y.squeeze(), y.unsqueeze(1).squeeze(1),
    )


def test_shape_views_forward_and_grad():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 5).requires_grad_()
    run_compiled(_shape_views, x, grad=True)


def test_shape_views_float64_noncontiguous_forward_and_grad():
    torch.manual_seed(1)
    x = torch.randn(5, 4, 3, 2, dtype=torch.float64).permute(3, 2, 1, 0).detach().requires_grad_()
    assert x.shape == (2, 3, 4, 5) and not x.is_contiguous()
    run_compiled(_shape_views, x, grad=True)


def _slices(x):
    y = x * 2 - 1
    return (y[1:3], y[:, ::2], y[..., 1::3], y[:, -2:], y[-3:-1, 1:-1], y[1], y[:, 2], y[..., -1], y[0, 1:, ::2],
            y.narrow(1, 1, 3), y[:, 10:], y[::2, ::3], y[1:2], y.unbind(0)[3])


def test_slice_and_select_forward():
    torch.manual_seed(2)
    x = torch.randn(5, 7, 9)
    t = torch.randn(9, 7, 5).transpose(0, 2)  # the same shape, non-contiguous
    run_compiled(lambda x, t: _slices(x) + _slices(t), x, t)


def test_slice_and_select_forward_and_grad():
    torch.manual_seed(3)
    x = torch.randn(5, 7, 9).requires_grad_()
    run_compiled(_slices, x, grad=True)


def test_split_and_chunk_values():
    # torch.split / chunk become aten.split_with_sizes, which kiln leaves to eager: the answer must still be right.
    torch.manual_seed(7)
    x = torch.randn(4, 9).requires_grad_()

    def f(x):
        a, b, c = torch.split(x * 2, [2, 3, 4], 1)
        p, q = x.chunk(2, 0)
        return a.exp(), b * c[:, :3], p - q

    run_compiled(f, x, grad=True, allow_fallback=True)


def test_slice_backward_runs_in_kiln():
    torch.manual_seed(4)
    x = torch.randn(6, 10).requires_grad_()

    def f(x):
        return x[1:4] * 2, x[:, ::3].exp(), x[:, -2:] + 1

    run_compiled(f, x, grad=True)


def test_select_backward_runs_in_kiln():
    torch.manual_seed(5)
    x = torch.randn(6, 10).requires_grad_()
    run_compiled(lambda x: (x[2] * 2, x[:, 3].exp()), x, grad=True)


def _pure_views(x):
    return (x.t(), x[1:3, ::2], x.view(2, 12), x.unsqueeze(0).expand(3, 4, 6), x[2], x.permute(1, 0).unsqueeze(1),
            x[:, 1])


def test_view_outputs_alias_inputs():
    x = torch.randn(4, 6)
    got, want, _ = run_compiled(_pure_views, x)
    for i, (out, ref) in enumerate(zip(got, want)):
        assert out.stride() == ref.stride() and out.storage_offset() == ref.storage_offset(), i
        assert out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr(), f"output {i} is a copy"
        assert out._base is x, i
    # Writes through the input show through the views, as in eager.
    x[2, 1] = 123.0
    assert got[-1][2].item() == 123.0 and got[0][1, 2].item() == 123.0


def test_view_outputs_of_offset_input_alias_it():
    base = torch.randn(8, 10)
    x = base[2:6, 3:9]  # a view with a storage offset
    fn = lambda x: (x * 2, x.t()[1:, :3])  # noqa: E731
    got, ref, _ = run_compiled(fn, x)
    assert got[1].untyped_storage().data_ptr() == base.untyped_storage().data_ptr()
    assert got[1].storage_offset() == ref[1].storage_offset() and got[1].stride() == ref[1].stride()


def _output_and_its_views(x):
    h = x + 1
    return h, h.view(24), h.t()


def _assert_outputs_share_storage(got):
    # In eager the second and third outputs are views of the first: writes through one show in the others.
    assert got[1].untyped_storage().data_ptr() == got[0].untyped_storage().data_ptr(), "view output is a copy"
    assert got[2].untyped_storage().data_ptr() == got[0].untyped_storage().data_ptr(), "view output is a copy"
    with torch.no_grad():
        got[0][1, 2] = -5.0
    assert got[1][8].item() == -5.0 and got[2][2, 1].item() == -5.0


def test_views_of_an_output_share_its_storage_with_grad():
    x = torch.randn(4, 6).requires_grad_()
    got, _, _ = run_compiled(_output_and_its_views, x, grad=True)
    _assert_outputs_share_storage(got)


def test_views_of_an_output_share_its_storage_inference():
    x = torch.randn(4, 6)
    got, _, _ = run_compiled(_output_and_its_views, x)
    _assert_outputs_share_storage(got)


def test_cat_variants_forward_and_grad():
    torch.manual_seed(6)
    a = torch.randn(3, 4).requires_grad_()
    b = torch.randn(3, 1).requires_grad_()
    c = torch.randn(2, 4, dtype=torch.float64).requires_grad_()
    e = torch.randn(0, 4).requires_grad_()

    def f(a, b, c, e):
        return (torch.cat([a, b], 1), torch.cat([a, c], 0), torch.cat([a, e, a * 2], 0), torch.cat([a.t(), b.t()], 0),
                torch.cat([a]), torch.cat([a.unsqueeze(0), a.unsqueeze(0)], 0), torch.cat([b, b, b], -1).exp())

    run_compiled(f, a, b, c, e, grad=True)


def test_cat_of_ints_and_bools():
    i = torch.arange(6).reshape(2, 3)
    bools = torch.tensor([[True, False, True]])
    run_compiled(lambda i, b: (torch.cat([i, b.long()], 0), torch.cat([b, b], 1), torch.cat([i, i * 2], -1)), i, bools)


def test_output_and_its_alias_share_one_buffer_but_a_clone_does_not():
    # Returning a value and an alias of it: one buffer, as in eager (writing one shows in the other).
    # A clone is a value of its own even though kiln computes it as the same value.
    x = torch.randn(6, 5)
    (y, alias, copy), _, _ = run_compiled(lambda x: (lambda y: (y, y.view_as(y), y.clone()))(x.sin() * 2), x)
    assert alias.data_ptr() == y.data_ptr() and alias.stride() == y.stride()
    assert copy.data_ptr() != y.data_ptr()
    y.add_(1)
    torch.testing.assert_close(alias, y)
    torch.testing.assert_close(copy, x.sin() * 2)
