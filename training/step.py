"""The train step shared by every experiment, and the eval step.

    train_step(state, batch, *, model, tx, loss_fn) -> (state, metrics)

``batch`` leaves have a leading microbatch axis, ``(M, b, ...)``: gradients are averaged over
the M microbatches inside the step (``lax.scan``), so growing the batch changes M, never the
per-device shape. The step is pure; bind the static pieces with ``functools.partial`` and
``jax.jit`` it once (``training.loop`` does, with explicit shardings and donated state).
"""

import jax
import jax.numpy as jnp
import optax
from optax import contrib

import models
import optimizers
from training.state import TrainState


def _weighted_mean(values, weights):
  """Mean of ``values``; ``weights`` (any leading part of its shape) masks and weighs entries."""
  if weights is None:
    return values.mean()
  weights = weights.astype(jnp.float32)
  weights = jnp.broadcast_to(weights.reshape(weights.shape + (1,) * (values.ndim - weights.ndim)),
                             values.shape)
  return (values * weights).sum() / jnp.maximum(weights.sum(), 1e-12)


def _apply(params, model_state, batch, rng, model, train):
  """Model outputs on ``batch["inputs"]`` (an array or a dict of arrays) and its new state."""
  variables = {"params": params, **model_state}
  mutable = list(model_state) if train and model_state else False
  out = model.apply(variables, batch["inputs"], train=train, rngs={"dropout": rng},
                    mutable=mutable)
  return out if mutable else (out, model_state)


def cross_entropy(params, model_state, batch, rng, *, model, train: bool = True):
  """Mean softmax cross-entropy of integer ``targets``; optional ``weights`` mask entries.

  Returns ``(loss, (aux, new_model_state))`` with ``aux`` holding accuracy.
  """
  logits, new_model_state = _apply(params, model_state, batch, rng, model, train)
  logits = logits.astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"])
  correct = (jnp.argmax(logits, -1) == batch["targets"]).astype(jnp.float32)
  weights = batch.get("weights")
  aux = {"accuracy": _weighted_mean(correct, weights)}
  return _weighted_mean(losses, weights), (aux, new_model_state)


def mean_squared_error(params, model_state, batch, rng, *, model, train: bool = True):
  """Mean of (prediction - target)^2 / 2 over float ``targets``; reports the mean absolute error."""
  predictions, new_model_state = _apply(params, model_state, batch, rng, model, train)
  error = predictions.astype(jnp.float32) - batch["targets"]
  weights = batch.get("weights")
  aux = {"mae": _weighted_mean(jnp.abs(error), weights)}
  return _weighted_mean(0.5 * error**2, weights), (aux, new_model_state)


def mean_absolute_error(params, model_state, batch, rng, *, model, train: bool = True):
  """Mean of |prediction - target| over float ``targets`` (e.g. graph regression)."""
  predictions, new_model_state = _apply(params, model_state, batch, rng, model, train)
  error = jnp.abs(predictions.astype(jnp.float32) - batch["targets"])
  weights = batch.get("weights")
  return _weighted_mean(error, weights), ({"mae": _weighted_mean(error, weights)},
                                          new_model_state)


LOSSES = {
    "cross_entropy": cross_entropy,
    "mean_squared_error": mean_squared_error,
    "mean_absolute_error": mean_absolute_error,
}


def _norms_by_role(tree, roles) -> dict[str, jax.Array]:
  """Global L2 norm of ``tree`` and the norm of each role's parameters."""
  sq = jax.tree.map(lambda x: jnp.sum(jnp.square(x.astype(jnp.float32))), tree)
  leaves, role_leaves = jax.tree.leaves(sq), jax.tree.leaves(roles)
  out = {"all": jnp.sqrt(sum(leaves))}
  for role in sorted(set(role_leaves)):
    out[role] = jnp.sqrt(sum(s for s, r in zip(leaves, role_leaves, strict=True) if r == role))
  return out


def train_step(state: TrainState, batch, *, model, tx, loss_fn):
  """One optimizer update on ``batch`` (leaves shaped ``(M, b, ...)``)."""
  rng = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  num_micro = jax.tree.leaves(batch)[0].shape[0]

  def one_microbatch(model_state, xs):
    index, microbatch = xs
    (loss, (aux, model_state)), grads = grad_fn(
        state.params, model_state, microbatch, jax.random.fold_in(rng, index), model=model)
    return model_state, (grads, loss, aux)

  if num_micro == 1:
    model_state, (grads, loss, aux) = one_microbatch(
        state.model_state, (0, jax.tree.map(lambda x: x[0], batch)))
  else:
    model_state, (grads, loss, aux) = jax.lax.scan(
        one_microbatch, state.model_state, (jnp.arange(num_micro), batch))
    grads, loss, aux = jax.tree.map(lambda x: x.mean(0), (grads, loss, aux))

  first = jax.tree.map(lambda x: x[0], batch)
  objective = lambda params: loss_fn(params, state.model_state, first, rng, model=model)[0]
  # The loss (NGN, Momo, Polyak) and the objective (Sophia's Hessian estimate) go to every
  # transformation as optax extra arguments; those that do not use them ignore them.
  tx = optax.with_extra_args_support(tx)
  updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss,
                                 obj_fn=objective)
  params = optax.apply_updates(state.params, updates)

  roles = models.param_roles(state.params)
  metrics = {"loss": loss, **aux}
  for group, lr in optimizers.learning_rates(opt_state).items():
    metrics["lr" if group == "default" else f"lr/{group}"] = lr
  for name, value in optimizers.diagnostics(opt_state).items():
    metrics[f"opt/{name}"] = value
  for name, tree in (("grad_norm", grads), ("update_norm", updates), ("param_norm", params)):
    for role, value in _norms_by_role(tree, roles).items():
      metrics[name if role == "all" else f"{name}/{role}"] = value
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            model_state=model_state)
  return new_state, metrics


def _is_schedule_free(node) -> bool:
  return isinstance(node, contrib.ScheduleFreeState)


def eval_params(params, opt_state):
  """The point to evaluate: the schedule-free average where the optimizer keeps one, else params.

  Schedule-free methods train at an interpolation y of the average x and the base iterate z;
  their loss is to be measured at x (``optax.contrib.schedule_free_eval_params``). In a
  per-role partition only the schedule-free group's leaves move to x; ``z`` holds
  ``optax.MaskedNode`` for the others.
  """
  for node in jax.tree.leaves(opt_state, is_leaf=_is_schedule_free):
    if not _is_schedule_free(node):
      continue
    z_leaves = jax.tree.leaves(node.z, is_leaf=lambda x: isinstance(x, optax.MaskedNode))
    if not any(isinstance(z, optax.MaskedNode) for z in z_leaves):
      params = contrib.schedule_free_eval_params(node, params)
      continue
    y_leaves, treedef = jax.tree.flatten(params)
    params = treedef.unflatten([
        y if isinstance(z, optax.MaskedNode) else (y - (1.0 - node.b1) * z) / node.b1
        for y, z in zip(y_leaves, z_leaves, strict=True)])
  return params


def eval_step(state: TrainState, batch, *, model, loss_fn):
  """Weighted sums of the loss and of each aux metric over ``batch``, and the weight total.

  ``batch["weights"]`` is 0 on the padding that fills the last batch of an evaluation set. The
  model is evaluated at ``eval_params`` (the schedule-free average for those methods).
  """
  params = eval_params(state.params, state.opt_state)
  loss, (aux, _) = loss_fn(params, state.model_state, batch, state.rng, model=model,
                           train=False)
  total = batch["weights"].astype(jnp.float32).sum()
  return {"loss_sum": loss * total, "count": total,
          **{f"{k}_sum": v * total for k, v in aux.items()}}
