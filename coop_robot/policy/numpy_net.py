"""The mirror network's one-tick inference in NumPy: the same outputs as
:meth:`MirrorPolicyNet.step <coop_robot.policy.mirror_net.MirrorPolicyNet.step>`, at under half its CPU.

A deployed policy runs the network once per tick (50 Hz) on a batch of one. At that size torch's
per-module dispatch, not arithmetic, is the cost: ~0.7 ms a step on this project's 2-core machine,
a few per cent of a core at 50 Hz before the node does anything else. :class:`NumpyMirrorStep`
copies the weights of a trained :class:`~coop_robot.policy.mirror_net.MirrorPolicyNet` once (float32,
torch's precision) and evaluates the step with a handful of matrix products: each of the encoder's
two convolutions as one gather of its input patches and one product (both windows in one batch
when the encoder is shared), the layer norm, one GRU cell (PyTorch's gate order and equations:
reset, update, new), the trunk and the act / forecast / value heads. The phase heads and latents
are not computed: the policy does not read them (analyses that do use the torch network).

GELU is the exact (erf) form torch's ``nn.GELU()`` uses; NumPy has no vectorised erf, so
:func:`erf` uses the rational approximation of Abramowitz & Stegun 7.1.26 (absolute error below
1.5e-7, the size of float32 rounding). ``test_numpy_net`` pins the outputs to torch's within 1e-5 on
the shipped checkpoints and the decisions tick for tick on fast-environment sessions of both tasks.

The copy is taken when the stepper is built: a network changed afterwards (training, a lesion's
hooks) is not seen -- :class:`~coop_robot.policy.mirror.MirrorPolicy` refuses to step when its
``net`` is no longer the one the copy came from.
"""

from __future__ import annotations

import math

import numpy as np

_DTYPE = np.float32       # torch's own precision; float64 would double the memory traffic
_SQRT_HALF = np.float32(1.0 / math.sqrt(2.0))
# Abramowitz & Stegun 7.1.26
_P = 0.3275911
_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf(x: np.ndarray) -> np.ndarray:
    """Elementwise error function, absolute error below 1.5e-7 (Abramowitz & Stegun 7.1.26).
    Evaluated in place on one scratch array: the step's cost is the number of NumPy calls."""
    a = np.abs(x)
    e = np.multiply(a, a)
    np.negative(e, out=e)
    np.exp(e, out=e)                                   # exp(-x^2)
    t = np.multiply(a, _P, out=a)
    t += 1.0
    np.reciprocal(t, out=t)
    poly = _A[4] * t
    for coef in _A[3::-1]:
        poly += coef
        poly *= t
    poly *= e
    np.subtract(1.0, poly, out=poly)
    return np.copysign(poly, x, out=poly)


def gelu(x: np.ndarray) -> np.ndarray:
    """torch's exact GELU, ``x * Phi(x)``."""
    phi = erf(x * _SQRT_HALF)
    phi += 1.0
    phi *= x
    phi *= 0.5
    return phi


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x: float) -> float:
    """torch's softplus (beta 1, threshold 20)."""
    return x if x > 20.0 else math.log1p(math.exp(x))


class _Conv1d:
    """A torch ``Conv1d`` (zero padding) on channels-last input ``(B, L, C_in)``: one gather of
    every output step's input patch (indices computed once) and one matrix product."""

    def __init__(self, conv, length: int) -> None:
        if conv.dilation != (1,) or conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError(f"unsupported Conv1d {conv}")
        w = conv.weight.detach().cpu().numpy().astype(_DTYPE)    # (C_out, C_in, K)
        c_out, self.c_in, k = w.shape
        self.pad, stride = conv.padding[0], conv.stride[0]
        self.length = length
        self.out_steps = (length + 2 * self.pad - k) // stride + 1
        self.index = stride * np.arange(self.out_steps)[:, None] + np.arange(k)[None, :]   # (L_out, K)
        self.w = np.ascontiguousarray(w.transpose(2, 1, 0).reshape(k * self.c_in, c_out))  # row k * C_in + c
        self.b = conv.bias.detach().cpu().numpy().astype(_DTYPE)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xp = np.zeros((x.shape[0], self.length + 2 * self.pad, self.c_in), dtype=_DTYPE)
        xp[:, self.pad:self.pad + self.length] = x
        cols = xp[:, self.index]                                   # (B, L_out, K, C_in)
        return cols.reshape(x.shape[0], self.out_steps, -1) @ self.w + self.b


def _linear(layer) -> tuple[np.ndarray, np.ndarray]:
    return (np.ascontiguousarray(layer.weight.detach().cpu().numpy().T.astype(_DTYPE)),
            layer.bias.detach().cpu().numpy().astype(_DTYPE))


class _Encoder:
    def __init__(self, encoder) -> None:
        import torch.nn as nn  # noqa: PLC0415 -- only to check the layer types being copied

        convs = [m for m in encoder.conv if isinstance(m, nn.Conv1d)]
        acts = [m for m in encoder.conv if not isinstance(m, nn.Conv1d)]
        if len(convs) != 2 or len(acts) != 2 or any(not isinstance(a, nn.GELU) or a.approximate != "none"
                                                     for a in acts):
            raise ValueError(f"unsupported encoder layers: {encoder.conv}")
        self.conv1 = _Conv1d(convs[0], encoder.window_steps)
        self.conv2 = _Conv1d(convs[1], self.conv1.out_steps)
        self.wp, self.bp = _linear(encoder.proj)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Windows ``(B, W, F)`` -> latents ``(B, D)``."""
        y = gelu(self.conv2(gelu(self.conv1(windows))))          # (B, L2, C)
        flat = y.transpose(0, 2, 1).reshape(y.shape[0], -1)       # torch's flatten of (B, C, L2)
        return flat @ self.wp + self.bp


class NumpyMirrorStep:
    """:meth:`MirrorPolicyNet.step` for a batch of one, in NumPy (module docstring).

    :meth:`step` takes the two windows ``(W, F)``, the context ``(C,)`` and the hidden state
    (``(H,)`` float32, None = zeros) and returns the policy's outputs as floats -- ``p_act``,
    ``exit_forecast_s``, ``exit_log_var``, ``value`` -- and the new hidden state.
    """

    def __init__(self, net) -> None:
        cfg = net.config
        self.shared = bool(cfg.shared_encoder)
        self.encoders = [_Encoder(e) for e in net.encoders]
        norm = net.core_norm
        self.norm_w = norm.weight.detach().cpu().numpy().astype(_DTYPE)
        self.norm_b = norm.bias.detach().cpu().numpy().astype(_DTYPE)
        self.norm_eps = float(norm.eps)
        gru = net.core
        if gru.num_layers != 1 or gru.bidirectional or not gru.bias:
            raise ValueError(f"unsupported GRU {gru}")

        def f32(t):
            return t.detach().cpu().numpy().astype(_DTYPE)

        self.w_ih = np.ascontiguousarray(f32(gru.weight_ih_l0).T)   # (in, 3H): gates r, z, n
        self.w_hh = np.ascontiguousarray(f32(gru.weight_hh_l0).T)   # (H, 3H)
        self.b_ih = f32(gru.bias_ih_l0)
        self.b_hh = f32(gru.bias_hh_l0)
        self.hidden_dim = gru.hidden_size
        self.w_trunk, self.b_trunk = _linear(net.trunk[0])
        # The three heads as one product: forecast mean, forecast log-variance, act logit, value.
        heads = [_linear(net.forecast_head), _linear(net.act_head), _linear(net.value_head)]
        self.w_heads = np.concatenate([w for w, _ in heads], axis=1)
        self.b_heads = np.concatenate([b for _, b in heads])

    def step(self, self_window: np.ndarray, other_window: np.ndarray, context: np.ndarray,
             hidden: np.ndarray | None) -> tuple[dict[str, float], np.ndarray]:
        if self.shared:
            z = self.encoders[0](np.stack([self_window, other_window]))
            z_self, z_other = z[0], z[1]
        else:
            z_self = self.encoders[0](self_window[None].astype(_DTYPE, copy=False))[0]
            z_other = self.encoders[-1](other_window[None].astype(_DTYPE, copy=False))[0]
        x = np.concatenate([z_self, z_other, np.asarray(context, dtype=_DTYPE)])
        x -= np.add.reduce(x) / x.size                      # layer norm (biased variance, as torch)
        x *= _DTYPE(1.0 / math.sqrt(float(x @ x) / x.size + self.norm_eps))
        x *= self.norm_w
        x += self.norm_b
        h = np.zeros(self.hidden_dim, dtype=_DTYPE) if hidden is None else hidden
        gi = x @ self.w_ih
        gi += self.b_ih
        gh = h @ self.w_hh
        gh += self.b_hh
        n_h2 = 2 * self.hidden_dim
        ru = _sigmoid(gi[:n_h2] + gh[:n_h2])                 # reset and update gates
        r, u = ru[:self.hidden_dim], ru[self.hidden_dim:]
        gh_n = gh[n_h2:]
        gh_n *= r
        gh_n += gi[n_h2:]
        n = np.tanh(gh_n, out=gh_n)
        h = n + u * (h - n)                                  # (1 - u) * n + u * h
        y = gelu(h @ self.w_trunk + self.b_trunk)
        mean, log_var, act_logit, value = (float(v) for v in y @ self.w_heads + self.b_heads)
        return {
            "p_act": 1.0 / (1.0 + math.exp(-act_logit)) if act_logit > -700 else 0.0,
            "exit_forecast_s": _softplus(mean),
            "exit_log_var": min(max(log_var, -8.0), 6.0),
            "value": value,
        }, h
