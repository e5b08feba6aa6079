r"""Label noise at language-model scale: DPO, cDPO, rDPO and IPO on a GPT.

Setting: the synthetic task of :mod:`prefsim.llm.task` — prompts and
responses from a letter Markov chain, true reward the number of ``a``'s in
the 8-letter response, exact for every sample. A tiny
:class:`prefsim.llm.GPT` is trained by :func:`prefsim.llm.task.sft` on the
chain's text: the reference policy :math:`\pi_{\rm ref}` and the starting
point of every fine-tuning run. Two responses per prompt are sampled from it
and labelled by Bradley-Terry on the true reward; for the noisy data set each
label is then flipped with probability :math:`\epsilon = 0.3` (the same
prompts, responses and BT draws for both rates). From the same SFT model,
:func:`prefsim.llm.train_preference` fine-tunes a copy with each loss of
:mod:`prefsim.losses`, taken by name:

* at :math:`\epsilon = 0`: DPO and IPO (cDPO and rDPO with their
  :math:`\epsilon = 0` are DPO, so they are not run twice);
* at :math:`\epsilon = 0.3`: DPO, cDPO (smoothing 0.3), rDPO (the true
  rate 0.3, as Chowdhury et al. assume it known) and IPO.

Every ``EVAL_EVERY`` steps :func:`prefsim.llm.task.evaluate` samples one
response per held-out prompt from the policy and one from the reference
(the same evaluation key at a given step for every run): the true reward,
the win rate against the reference (ties count one half) and the Monte Carlo
:math:`\mathrm{KL}(\pi\,\|\,\pi_{\rm ref})` of whole responses.

What theory predicts (Chowdhury, Kini, Natarajan 2024; THEORY.md §2): DPO on
flipped labels fits the noisy preference :math:`(1-\epsilon)p +
\epsilon(1-p)`, pulled toward one half, so it moves less far from the
reference along the reward direction; its expected gradient at the start is
:math:`1-2\epsilon` times the clean one. rDPO's loss is an unbiased estimate
of the clean loss, so its policy follows the clean-label one. cDPO shrinks
as DPO does. The claim checked: **at 30% flips rDPO's true-reward win rate
against the reference beats DPO's** (after the last step, averaged over the
seeds), with the premises that clean-label DPO improves on the reference and
that flips lower DPO's win rate.

Quick mode: a 2-layer, width-32 GPT, 1,024 pairs, 300 steps of batch 32,
2 seeds — a few minutes on 2 CPU cores. Full mode: a 4-layer, width-64 GPT,
4,096 pairs, 1,000 steps of batch 64, 4 seeds — about half an hour on 2 CPU
cores, minutes on one GPU.
"""

from __future__ import annotations

from flax import nnx
import jax
import numpy as np
import optax

from prefsim import llm
from prefsim import plotting
from prefsim.llm import task
from studies._harness import Claim, Context, Report, check

DESCRIPTION = ("LLM fine-tuning under 30% label flips: rDPO's true-reward win "
               "rate beats DPO's (synthetic task, exact reward)")

FLIP = 0.3
RUNS = (("dpo", 0.0), ("ipo", 0.0),
        ("dpo", FLIP), ("cdpo", FLIP), ("rdpo", FLIP), ("ipo", FLIP))
"""(loss, flip rate of the data); cDPO and rDPO get the true rate as eps."""
BETA = 0.5
METRICS = ("reward", "win_rate", "kl")

QUICK = {"width": 32, "depth": 2, "heads": 2, "sft_steps": 300,
         "pairs": 1024, "steps": 300, "batch": 32, "lr": 1e-3,
         "eval_every": 25, "eval_prompts": 2048, "seeds": 2}
FULL = {"width": 64, "depth": 4, "heads": 4, "sft_steps": 600,
        "pairs": 4096, "steps": 1000, "batch": 64, "lr": 1e-3,
        "eval_every": 50, "eval_prompts": 4096, "seeds": 4}


def _label(loss: str, eps: float) -> str:
  return f"{loss}, {eps:.0%} flips"


def _seed_runs(seed: int, cfg: dict, config: task.TaskConfig,
               ctx: Context) -> dict[str, np.ndarray]:
  """Every run of one seed: ``{metric: [R, T + 1]}`` (step 0 included)."""
  k_sft, k_pairs, k_eval_prompts, k_eval, k_train = jax.random.split(
      jax.random.key(seed), 5)
  gpt = llm.GPTConfig(vocab_size=config.vocab_size, context=config.length,
                      width=cfg["width"], depth=cfg["depth"],
                      heads=cfg["heads"])
  ref = llm.GPT(gpt, rngs=nnx.Rngs(seed))
  sft_loss = task.sft(k_sft, ref, config, steps=cfg["sft_steps"])
  ctx.log(f"seed {seed}: SFT {cfg['sft_steps']} steps, final loss "
          f"{sft_loss[-1]:.3f} nats/token")
  # The same key for both rates: the same prompts, responses and BT draws,
  # and the flips nested (a label flipped at 0 is flipped at 0.3).
  data = {eps: task.preference_pairs(k_pairs, ref, config, cfg["pairs"],
                                     eps=eps) for eps in (0.0, FLIP)}
  prompts = task.prompts(k_eval_prompts, config, cfg["eval_prompts"])

  def eval_fn(step, model):
    return task.evaluate(jax.random.fold_in(k_eval, step), model, ref, config,
                         prompts)

  start = eval_fn(0, ref)
  out = {m: np.zeros((len(RUNS), cfg["steps"] // cfg["eval_every"] + 1))
         for m in METRICS}
  for r, (loss, eps) in enumerate(RUNS):
    policy = nnx.clone(ref)
    kwargs = {"eps": eps} if loss in ("cdpo", "rdpo") else None
    result = llm.train_preference(
        policy, ref, data[eps], loss=loss, beta=BETA,
        optimizer=optax.adam(cfg["lr"]), steps=cfg["steps"],
        batch_size=cfg["batch"], key=k_train, ref_logps="cached",
        loss_kwargs=kwargs, eval_fn=eval_fn, eval_every=cfg["eval_every"])
    for m in METRICS:
      out[m][r] = [start[m]] + [e[m] for _, e in result.evals]
    final = result.evals[-1][1]
    ctx.log(f"seed {seed}: {_label(loss, eps)}: win rate "
            f"{final['win_rate']:.3f}, reward {final['reward']:.3f}, KL "
            f"{final['kl']:.3f}")
  out["flipped"] = np.asarray(data[FLIP].flipped).mean()
  out["sft_loss"] = sft_loss[-1]
  return out


def _train(cfg: dict, config: task.TaskConfig, ctx: Context) -> dict:
  """``{metric: [S, R, T + 1]}`` over seeds, plus the flip fractions."""
  runs = [_seed_runs(s, cfg, config, ctx) for s in range(cfg["seeds"])]
  return {k: np.stack([run[k] for run in runs]) for k in runs[0]}


def _figure(res, steps, cfg):
  fig, axes = plotting.figure(1, 2, width=12.0, height=4.8)
  for r, (loss, eps) in enumerate(RUNS):
    style = {"linestyle": "--" if eps == 0 else "-",
             "color": plotting.color(loss)}
    label = _label(loss, eps)
    kl, reward = res["kl"][:, r].mean(0), res["reward"][:, r].mean(0)
    axes[0].plot(kl, reward, marker="o", markersize=2.5, label=label,
                 **style)
    axes[0].plot(kl[-1:], reward[-1:], marker="*", markersize=9, **style)
    plotting.band(axes[1], steps, res["win_rate"][:, r], label=label,
                  **style)
  ref_reward = res["reward"][:, 0, 0].mean()
  axes[0].axhline(ref_reward, color="0.5", linewidth=0.8, linestyle=":",
                  label="reference")
  axes[0].set(xlabel=r"$\mathrm{KL}(\pi\,\|\,\pi_{\rm ref})$ of a response "
                     "(nats, Monte Carlo)",
              ylabel="true reward of a sample (number of a's)",
              title="Reward vs KL along training (star: last step)")
  axes[1].axhline(0.5, color="0.5", linewidth=0.8, linestyle=":")
  axes[1].set(xlabel="training step", ylabel="win rate against the reference",
              title="True-reward win rate (ties count ½)")
  axes[0].legend(fontsize=8, title=f"{cfg['seeds']} seeds, mean ± s.e.; "
                 "cDPO/rDPO get the true ε", title_fontsize=8,
                 loc="lower right")
  fig.suptitle(f"Preference fine-tuning of a GPT ({cfg['depth']} layers, "
               f"width {cfg['width']}) under label flips: {cfg['pairs']} "
               f"pairs, β = {BETA:g}, {cfg['steps']} steps of {cfg['batch']}")
  return fig


def run(ctx: Context) -> Report:
  cfg = QUICK if ctx.quick else FULL
  config = task.TaskConfig()
  key = {"cfg": cfg, "task": config.__dict__, "runs": RUNS, "beta": BETA}
  res = ctx.memo("runs", lambda: _train(cfg, config, ctx), **key)
  steps = np.arange(0, cfg["steps"] + 1, cfg["eval_every"])
  final = {m: res[m][:, :, -1] for m in METRICS}            # [S, R]
  index = {run: r for r, run in enumerate(RUNS)}
  win = {run: final["win_rate"][:, r] for run, r in index.items()}
  for run, r in index.items():
    ctx.log(f"{_label(*run)}: final win rate "
            f"{np.round(win[run], 3).tolist()}, KL "
            f"{np.round(final['kl'][:, r], 2).tolist()}")

  rdpo, dpo = win[("rdpo", FLIP)], win[("dpo", FLIP)]
  claims: list[Claim] = [
      check("premise: fraction of labels flipped in the noisy data (mean "
            "over seeds)", res["flipped"].mean(), lo=FLIP - 0.05,
            hi=FLIP + 0.05),
      check("premise: clean-label DPO's win rate against the reference",
            win[("dpo", 0.0)].mean(), lo=0.6),
      check("premise: DPO's win rate, 30% flips minus clean labels",
            (dpo - win[("dpo", 0.0)]).mean(), hi=0.0),
      check("at 30% flips: rDPO's win rate minus DPO's (mean over seeds)",
            (rdpo - dpo).mean(), lo=0.0),
      check("at 30% flips: share of seeds where rDPO's win rate beats DPO's",
            np.mean(rdpo > dpo), lo=1.0),
  ]
  series = {"step": steps,
            "runs": [_label(*run) for run in RUNS],
            **{m: res[m] for m in METRICS},
            "final_win_rate": {_label(*run): w.tolist()
                               for run, w in win.items()}}
  return Report(figure=_figure(res, steps, cfg), series=series,
                claims=claims, config=key,
                seeds=list(range(cfg["seeds"])))
