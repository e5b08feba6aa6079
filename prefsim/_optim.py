"""A jittable L-BFGS minimiser shared by the model-fitting functions.

``minimize_lbfgs`` runs ``optax.lbfgs`` (with its zoom line search) inside a
``lax.while_loop``, so a whole fit is one XLA computation that ``jit`` caches
and ``vmap`` batches over seeds or data sets.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
import optax.tree_utils as otu


def _max_abs(tree: Any) -> jax.Array:
  """Largest absolute entry over every leaf of a pytree (0 for no leaves)."""
  leaves = jax.tree_util.tree_leaves(tree)
  if not leaves:
    return jnp.zeros(())
  return jnp.max(jnp.stack(
      [jnp.max(jnp.abs(leaf)).astype(jnp.result_type(float))
       for leaf in leaves]))


def minimize_lbfgs(fun: Callable[[Any], jax.Array], x0: Any, *,
                   max_iter: int | jax.Array = 500,
                   tol: float | jax.Array = 1e-6,
                   memory_size: int = 10) -> tuple[Any, jax.Array]:
  r"""Minimise a smooth scalar function of a pytree with L-BFGS.

  Iterates the limited-memory BFGS update with a zoom (strong Wolfe) line
  search,

  .. math:: x_{t+1} = x_t - \eta_t H_t \nabla f(x_t),

  where :math:`H_t` is the L-BFGS approximation of the inverse Hessian built
  from the last ``memory_size`` pairs :math:`(x_{s+1}-x_s,
  \nabla f(x_{s+1})-\nabla f(x_s))`, and stops when
  :math:`\max_i |\nabla f(x_t)_i| \le \mathrm{tol}` (over every leaf), when
  ``max_iter`` iterations have run, or when an iteration leaves ``x``
  unchanged (the line search found no decrease: the attainable precision of
  the dtype has been reached).

  Jittable and vmappable: ``max_iter`` and ``tol`` may be traced. Call it
  inside ``jax.jit`` so that the loop compiles once per shape.

  Args:
    fun: the objective, a function of one pytree shaped like ``x0`` returning
      a scalar; it must be differentiable with ``jax.grad``.
    x0: the starting point, any pytree of float arrays.
    max_iter: the most L-BFGS iterations to run.
    tol: stop once the largest absolute gradient entry is at most ``tol``.
    memory_size: number of curvature pairs L-BFGS keeps (static).

  Returns:
    ``(x, n_iter)``: the final iterate (a pytree like ``x0``) and the number
    of iterations run (int32 scalar).

  References:
    Nocedal, J. and Wright, S. J. Numerical Optimization, 2nd ed., Springer
    2006: Algorithm 7.5 (L-BFGS) and Algorithms 3.5-3.6 (zoom line search).
    Implementation: ``optax.lbfgs`` and ``optax.value_and_grad_from_state``.
  """
  opt = optax.lbfgs(memory_size=memory_size)
  value_and_grad = optax.value_and_grad_from_state(fun)
  tol = jnp.asarray(tol)

  def cond(carry):
    _, _, it, gmax, stalled = carry
    return (it < max_iter) & (gmax > tol) & jnp.logical_not(stalled)

  def body(carry):
    x, state, it, _, _ = carry
    value, grad = value_and_grad(x, state=state)
    updates, state = opt.update(grad, state, x, value=value, grad=grad,
                                value_fn=fun)
    x_new = optax.apply_updates(x, updates)
    stalled = _max_abs(updates) == 0
    # The line search stores the gradient at the accepted point.
    gmax = _max_abs(otu.tree_get(state, "grad"))
    return x_new, state, it + 1, gmax, stalled

  init = (x0, opt.init(x0), jnp.zeros((), jnp.int32),
          _max_abs(jax.grad(fun)(x0)), jnp.zeros((), bool))
  x, _, n_iter, _, _ = jax.lax.while_loop(cond, body, init)
  return x, n_iter
