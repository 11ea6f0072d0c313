"""Methods optax already provides, registered under their optax names and used as they are."""

import optax
from optax import contrib

from optimizers._registry import register

__all__ = []

register("sgd", optax.sgd)
register("adam", optax.adam)
register("adamw", optax.adamw)
register("nadamw", optax.nadamw)
register("rmsprop", optax.rmsprop)
register("adafactor", optax.adafactor)
register("lion", optax.lion)
register("lamb", optax.lamb)
register("lars", optax.lars)
register("adabelief", optax.adabelief)
register("adan", optax.adan)
register("sign_sgd", optax.sign_sgd)
register("signum", optax.signum)
register("muon", contrib.muon)
register("ademamix", contrib.ademamix)
register("simplified_ademamix", contrib.simplified_ademamix)
register("schedule_free_adamw", contrib.schedule_free_adamw)
register("schedule_free_sgd", contrib.schedule_free_sgd)
register("prodigy", contrib.prodigy)
register("sophia", contrib.sophia)
register("adopt", contrib.adopt)
register("momo", contrib.momo)
register("dog", contrib.dog)


@register("mechanize")
def _mechanize(learning_rate, weight_decay=0.01, eps=1e-8, s_init=1e-6, num_betas=6):
  """Mechanic (Cutkosky et al., 2023) tuning the scale of Adam steps of size ``learning_rate``."""
  return contrib.mechanize(optax.adam(learning_rate), weight_decay=weight_decay, eps=eps,
                           s_init=s_init, num_betas=num_betas)
