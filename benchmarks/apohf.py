"""APOHF over 20 seeds: prefsim's sweep against a per-seed PyTorch loop.

The same algorithm and problem for both tools: the prompt-selection problem
of the study ``prompt_selection`` (200 prompts, 768-d unit embeddings in a
4-d subspace, random-MLP utility with standard deviation 10, BT duels), APOHF
with ν = 1, λ = 0.1, 5 initial random pairs, an MLP 768→32→32→1 initialised
N(0, 1), retrained every round from that initialisation by 30 full-batch
Adam steps at lr 3e-2 with weight decay λ/(n + 50), diagonal :math:`U`
(quick: 4 seeds x 10 rounds; full: 20 seeds x 30 rounds).

- prefsim: ``prefsim.sweep(key, bandits.apohf(...), problem, T, 20)``, one
  jitted call vmapped over the seeds (compile time reported apart; median of
  3 warm calls).
- PyTorch (CPU): what a user would write, a loop over seeds and rounds;
  ``torch.optim.Adam(weight_decay=λ/(n+50))`` for the fit (as the authors'
  code) and ``torch.func.vmap(torch.func.grad(...))`` for the per-prompt
  gradients :math:`g(x)` of the bonus. One pass.

Same work: from one initialisation and one history both tools fit the MLP
and compute the bonus; the claims bound the relative differences of the
fitted utilities and of the bonuses. The runs' regrets differ only by their
random streams; their means are reported.

The headline ratio is PyTorch's time over prefsim's (warm) for the whole
batch of seeds.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import prefsim
from benchmarks._harness import BenchResult, time_call
from prefsim import bandits
from prefsim.bandits import neural
from studies._harness import check

DESCRIPTION = ("APOHF (200 prompts, 768-d) over 20 seeds: prefsim sweep vs "
               "a per-seed PyTorch loop")

N_ARMS, DIM, INTRINSIC, SCALE, PROBLEM_KEY = 200, 768, 4, 10.0, 7
HIDDEN, N_INIT, NU, LAM, STEPS, LR = (32, 32), 5, 1.0, 0.1, 30, 3e-2


def _torch_mlp(params, x):
  h = x
  for w, b in params[:-1]:
    h = torch.relu(h @ w + b)
  w, b = params[-1]
  return (h @ w + b)[..., 0]


def _torch_fit(init, x, pairs, wins):
  """Full-batch Adam from ``init`` on the BT loss (the authors' recipe)."""
  params = [t.clone().requires_grad_(True) for layer in init for t in layer]
  n = len(pairs)
  opt = torch.optim.Adam(params, lr=LR, weight_decay=LAM / (n + 50))
  a, b = torch.tensor(pairs).T
  y = torch.tensor(wins, dtype=torch.float32)
  for _ in range(STEPS):
    opt.zero_grad()
    h = _torch_mlp(list(zip(params[::2], params[1::2])), x)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(h[a] - h[b],
                                                                y)
    loss.backward()
    opt.step()
  return [(w.detach(), b.detach()) for w, b in zip(params[::2], params[1::2])]


def _torch_bonus(params, x, pairs, first):
  """The diagonal-U bonus from per-prompt autodiff gradients [K, P]."""
  flat = [t for layer in params for t in layer]

  def h_one(theta, xi):
    return _torch_mlp(list(zip(theta[::2], theta[1::2])), xi[None])[0]

  grads = torch.func.vmap(torch.func.grad(h_one), in_dims=(None, 0))(flat, x)
  g = torch.cat([t.reshape(x.shape[0], -1) for t in grads], dim=1)
  a, b = torch.tensor(pairs).T
  u = LAM + ((g[a] - g[b])**2).sum(0)
  return torch.sqrt(NU * ((g - g[first])**2 / u).sum(1))


def _torch_run(x, utilities, seed, rounds):
  """One seed of APOHF; returns the reported regrets [T]."""
  rng = np.random.default_rng(seed)
  gen = torch.Generator().manual_seed(seed)
  widths = (DIM, *HIDDEN, 1)
  init = [(torch.randn(i, o, generator=gen), torch.randn(o, generator=gen))
          for i, o in zip(widths[:-1], widths[1:])]

  def duel(a, b):
    return bool(rng.random() < 1 / (1 + np.exp(utilities[b] - utilities[a])))

  pairs, wins = [], []
  for _ in range(N_INIT):
    a = int(rng.integers(N_ARMS))
    b = int((a + rng.integers(1, N_ARMS)) % N_ARMS)
    pairs.append((a, b))
    wins.append(duel(a, b))
  params = _torch_fit(init, x, pairs, wins)
  regrets = []
  for _ in range(rounds):
    with torch.no_grad():
      h = _torch_mlp(params, x)
    first = int(torch.argmax(h))
    score = h + _torch_bonus(params, x, pairs, first)
    score[first] = -torch.inf
    second = int(torch.argmax(score))
    pairs.append((first, second))
    wins.append(duel(first, second))
    params = _torch_fit(init, x, pairs, wins)
    with torch.no_grad():
      h = _torch_mlp(params, x).numpy()
    queried = np.unique(np.asarray(pairs))
    report = queried[np.argmax(h[queried])]
    regrets.append(utilities.max() - utilities[report])
  return np.asarray(regrets)


def _same_work(problem, history):
  """Relative differences of the fitted utilities and of the bonuses."""
  init = bandits.mlp_init(jax.random.key(5), DIM, HIDDEN)
  ours = bandits.fit_mlp(init, problem.embeddings, history, train_steps=STEPS,
                         lr=LR, lam=LAM)
  n = int(history.n)
  pairs = [tuple(int(v) for v in p) for p in np.asarray(history.pairs[:n])]
  wins = [bool(w) for w in np.asarray(history.wins[:n])]
  x = torch.tensor(np.asarray(problem.embeddings))
  to_torch = [(torch.tensor(np.asarray(w)), torch.tensor(np.asarray(b)))
              for w, b in init]
  theirs = _torch_fit(to_torch, x, pairs, wins)
  h_ours = np.asarray(bandits.mlp(ours, problem.embeddings))
  h_theirs = _torch_mlp(theirs, x).detach().numpy()
  fit_diff = np.abs(h_ours - h_theirs).max() / np.abs(h_theirs).max()
  first = int(np.argmax(h_ours))
  _, blocks = neural._tangent_blocks(ours, problem.embeddings)  # pylint: disable=protected-access
  b_ours = np.asarray(neural._mlp_bonus(blocks, jnp.asarray(first), history,  # pylint: disable=protected-access
                                        nu=NU, lam=LAM))
  ours_torch = [(torch.tensor(np.asarray(w)), torch.tensor(np.asarray(b)))
                for w, b in ours]
  b_theirs = _torch_bonus(ours_torch, x, pairs, first).detach().numpy()
  keep = np.arange(N_ARMS) != first
  bonus_diff = (np.abs(b_ours - b_theirs)[keep].max()
                / np.abs(b_theirs[keep]).max())
  return float(fit_diff), float(bonus_diff)


def run(quick: bool) -> BenchResult:
  n_seeds, rounds = (4, 10) if quick else (20, 30)
  problem = bandits.mlp_problem(jax.random.key(PROBLEM_KEY), N_ARMS, DIM,
                                intrinsic_dim=INTRINSIC, scale=SCALE)
  alg = bandits.apohf(rounds, n_init=N_INIT, hidden=HIDDEN, nu=NU, lam=LAM,
                      train_steps=STEPS, lr=LR)

  def ours():
    return prefsim.sweep(jax.random.key(1), alg, problem, rounds, n_seeds)

  start = time.perf_counter()
  _, info = jax.block_until_ready(ours())
  first_call = time.perf_counter() - start
  timing = time_call(ours, repeat=3, warmup=0)
  regret_ours = np.asarray(info["reported_regret"], np.float64)

  x = torch.tensor(np.asarray(problem.embeddings))
  u = np.asarray(problem.utilities, np.float64)
  start = time.perf_counter()
  regret_torch = np.stack([_torch_run(x, u, seed, rounds)
                           for seed in range(n_seeds)])
  torch_seconds = time.perf_counter() - start

  history = neural._history_init(jax.random.key(2), problem, 60, 60)  # pylint: disable=protected-access
  fit_diff, bonus_diff = _same_work(problem, history)
  ratio = torch_seconds / timing["median"]
  return BenchResult(
      rows=[{"tool": "prefsim sweep (warm)", "seconds": timing["median"],
             "spread": f"{timing['best']:.3g}-{max(timing['all']):.3g}",
             "mean regret": float(regret_ours.mean())},
            {"tool": "prefsim sweep (first call, with compile)",
             "seconds": first_call, "spread": "",
             "mean regret": float(regret_ours.mean())},
            {"tool": "PyTorch per-seed loop", "seconds": torch_seconds,
             "spread": "one pass", "mean regret": float(regret_torch.mean())}],
      ratio=ratio, ratio_label="PyTorch loop time / prefsim sweep time",
      config={"n_seeds": n_seeds, "rounds": rounds, "n_arms": N_ARMS,
              "dim": DIM, "intrinsic_dim": INTRINSIC, "scale": SCALE,
              "problem_key": PROBLEM_KEY, "hidden": HIDDEN, "n_init": N_INIT,
              "nu": NU, "lam": LAM, "train_steps": STEPS, "lr": LR,
              "torch_threads": torch.get_num_threads()},
      claims=[
          check("same fit: max |h_prefsim - h_torch| / max |h_torch| "
                "(60 duels, same initialisation)", fit_diff, hi=1e-3),
          check("same bonus: max relative difference over prompts",
                bonus_diff, hi=1e-3)])
