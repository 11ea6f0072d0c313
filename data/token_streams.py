"""Generated token streams with an exact, chosen unigram law: uniform or Zipf.

The Adam-SGD gap study asks whether Adam's advantage on language comes from the heavy-tailed
token frequencies (Kunstner et al., 2024): with a uniform vocabulary it persists, with a
heavy-tailed one it nearly vanishes. This source lets the unigram law be the only thing that
changes: ``zipf_exponent`` sets ``p(token r) ∝ (r + 1) ** -zipf_exponent`` (0 = uniform), and
token id = frequency rank.

What there is to learn beyond the unigram law: a sparse random Markov chain whose stationary
distribution is exactly that law. It is built from ``num_maps`` interval couplings: lay the
tokens on [0, 1) as intervals of length p(r) in rank order, and again in a random order; the
overlap of token x's interval in the first layout with token y's in the second is a joint
law J(x, y) whose two marginals are both p, exactly. Averaging ``num_maps`` such couplings
(independent random orders) and mixing in a restart, ``P(y | x) = (1 - restart_prob)
J(x, y) / p(x) + restart_prob p(y)``, keeps p stationary (``p P = p``) and makes the chain
ergodic. A rare token has one or two successors per coupling (nearly deterministic), a
frequent one spreads over many; in the uniform case each coupling is a random permutation, so
every token has ``num_maps`` equally likely successors. Each sequence starts from p, so every
position's marginal is p: the unigram law is exact, not just asymptotic.

Because the chain is Markov, the best possible next-token loss is its entropy rate, recorded in
``info`` with the unigram entropy (the loss of the best model that ignores context): a model
learns the structure exactly when its loss goes below the unigram entropy.

Training example ``i`` is drawn from ``default_rng((seed, i))``, the evaluation set from
streams fixed by ``structure_seed`` alone; the chain itself depends only on ``structure_seed``,
so runs with different seeds see the same task in a different order.
"""

import numpy as np

from data.source import check_eval_examples, check_int, check_number

_EVAL_STREAM = 0x0E7A1  # entropy tag that separates evaluation sequences from training ones


def unigram_law(vocab_size: int, zipf_exponent: float) -> np.ndarray:
  """p(r) ∝ (r + 1) ** -zipf_exponent over ranks r = 0 .. vocab_size - 1."""
  weights = np.arange(1, vocab_size + 1, dtype=np.float64) ** -float(zipf_exponent)
  return weights / weights.sum()


def fit_zipf_exponent(counts) -> float:
  """Maximum-likelihood Zipf exponent of token ``counts`` (ranked by frequency, not by id)."""
  from scipy import optimize
  counts = np.sort(np.asarray(counts, np.float64))[::-1]
  log_rank = np.log(np.arange(1, counts.size + 1))

  def neg_log_likelihood(s):
    log_z = np.logaddexp.reduce(-s * log_rank)
    return s * (counts @ log_rank) + counts.sum() * log_z

  return float(optimize.minimize_scalar(neg_log_likelihood, bounds=(0.0, 6.0),
                                        method="bounded", options={"xatol": 1e-6}).x)


def _interval_coupling(law: np.ndarray, order: np.ndarray):
  """Entries (x, y, mass) of the joint law overlapping rank-order and ``order`` layouts."""
  V = law.size
  edges_x = np.concatenate([[0.0], np.cumsum(law)])
  edges_y = np.concatenate([[0.0], np.cumsum(law[order])])
  cuts = np.union1d(edges_x, edges_y)
  mass = np.diff(cuts)
  mid = 0.5 * (cuts[:-1] + cuts[1:])
  keep = mass > 0
  x = np.clip(np.searchsorted(edges_x, mid[keep], side="right") - 1, 0, V - 1)
  y = order[np.clip(np.searchsorted(edges_y, mid[keep], side="right") - 1, 0, V - 1)]
  return x, y, mass[keep]


class TokenStreams:
  """Next-token prediction on a sparse Markov chain with a uniform or Zipf unigram law.

  Args:
    seq_len: tokens per training sequence (the model sees ``seq_len`` inputs and targets).
    seed: orders the training stream.
    vocab_size: number of token ids (= ranks).
    zipf_exponent: exponent s of the unigram law ``p(r) ∝ (r + 1) ** -s``; 0 is uniform.
    num_maps: interval couplings averaged into the transition matrix (more = less predictable).
    restart_prob: probability of drawing the next token afresh from the unigram law.
    structure_seed: draws the couplings' random orders and the evaluation sequences.
    eval_examples: sequences in the fixed evaluation set.
  """

  def __init__(self, *, seq_len: int, seed: int, vocab_size: int = 1024,
               zipf_exponent: float = 1.0, num_maps: int = 2, restart_prob: float = 0.1,
               structure_seed: int = 0, eval_examples: int = 64):
    check_int("seq_len", seq_len, low=1, hint=" (tokens per training sequence)")
    check_int("vocab_size", vocab_size, low=2, hint=" (token ids)")
    check_number("zipf_exponent", zipf_exponent, low=0.0, hint=" (0 = uniform)")
    check_int("num_maps", num_maps, low=1, hint=" (couplings averaged into the chain)")
    check_number("restart_prob", restart_prob, low=0.0, high=1.0)
    check_int("structure_seed", structure_seed, low=0)
    check_eval_examples(eval_examples)
    self.seq_len, self.seed, self.eval_examples = seq_len, seed, eval_examples
    self.restart_prob, self.structure_seed = float(restart_prob), structure_seed
    self.law = unigram_law(vocab_size, zipf_exponent)
    if not self.law[-1] > 0:  # the rarest token's probability underflowed to 0: log(0) below
      raise ValueError(f"data.zipf_exponent={zipf_exponent} gives the rarest of "
                       f"data.vocab_size={vocab_size} tokens probability 0 in float64: set "
                       f"data.zipf_exponent below {300 / np.log10(vocab_size):.0f}")
    self._law_cdf = np.cumsum(self.law)

    parts = [_interval_coupling(self.law, np.random.default_rng((structure_seed, m)).permutation(
        vocab_size)) for m in range(num_maps)]
    x, y, mass = (np.concatenate(p) for p in zip(*parts, strict=True))
    pair, inverse = np.unique(x * vocab_size + y, return_inverse=True)
    joint = np.bincount(inverse, weights=mass) / num_maps
    rows, self._successors = pair // vocab_size, pair % vocab_size
    self._indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=vocab_size))])
    row_mass = np.add.reduceat(joint, self._indptr[:-1])
    self._probs = joint / row_mass[rows]  # P_sparse(y | x): each row sums to 1
    # Row x's cumulative probabilities shifted by x: one searchsorted samples every row at once.
    within = np.cumsum(self._probs) - np.repeat(np.cumsum(self._probs)[self._indptr[:-1]]
                                                - self._probs[self._indptr[:-1]],
                                                np.diff(self._indptr))
    within = np.minimum(within, 1.0)
    within[self._indptr[1:] - 1] = 1.0
    self._keys = rows + within

    self.info = {
        "generator": "zipf-markov-chain",
        "vocab_size": vocab_size,
        "zipf_exponent": float(zipf_exponent),
        "num_maps": num_maps,
        "restart_prob": self.restart_prob,
        "structure_seed": structure_seed,
        "transitions": int(pair.size),
        "unigram_entropy_nats": self.unigram_entropy(),
        "entropy_rate_nats": self.entropy_rate(),
    }

  @property
  def tokens_per_example(self) -> int:
    return self.seq_len

  def unigram_entropy(self) -> float:
    """Loss of the best context-free predictor (nats): H(p)."""
    return float(-(self.law * np.log(self.law)).sum())

  def entropy_rate(self) -> float:
    """Loss of the best predictor (nats): sum_x p(x) H(P(. | x)), computed on the sparse rows."""
    eps, law = self.restart_prob, self.law
    rows = np.repeat(np.arange(law.size), np.diff(self._indptr))
    p_sparse = (1 - eps) * self._probs + eps * law[self._successors]
    # H(row x) = -sum over its successors of p log p - sum over the rest of eps p(y) log(eps p(y))
    on_support = -np.bincount(rows, weights=p_sparse * np.log(p_sparse), minlength=law.size)
    if eps > 0:
      eps_law_log = eps * law * np.log(eps * law)
      off_support = -(eps_law_log.sum() - np.bincount(rows, weights=eps_law_log[self._successors],
                                                      minlength=law.size))
    else:
      off_support = 0.0
    return float(law @ (on_support + off_support))

  def _sequences(self, uniforms_Nx3xS: np.ndarray) -> np.ndarray:
    """Walks the chain: uniforms[:, 0] pick successors, [:, 1] restarts, [:, 2] fresh tokens."""
    pick, restart, fresh = uniforms_Nx3xS[:, 0], uniforms_Nx3xS[:, 1], uniforms_Nx3xS[:, 2]
    V = self.law.size
    draw = lambda u: np.minimum(np.searchsorted(self._law_cdf, u, side="right"), V - 1)
    seq_NxS = np.empty(pick.shape, np.int64)
    seq_NxS[:, 0] = draw(fresh[:, 0])
    for t in range(1, seq_NxS.shape[1]):
      x = seq_NxS[:, t - 1]
      step = self._successors[np.searchsorted(self._keys, x + pick[:, t], side="right")]
      seq_NxS[:, t] = np.where(restart[:, t] < self.restart_prob, draw(fresh[:, t]), step)
    return seq_NxS.astype(np.int32)

  def _examples(self, entropies) -> dict[str, np.ndarray]:
    uniforms = np.stack([np.random.default_rng(e).random((3, self.seq_len + 1))
                         for e in entropies])
    seq = self._sequences(uniforms)
    return {"inputs": seq[:, :-1], "targets": seq[:, 1:]}

  def examples(self, start: int, count: int) -> dict[str, np.ndarray]:
    """Training sequences ``start .. start + count - 1`` of the infinite stream."""
    return self._examples([(self.seed, i) for i in range(start, start + count)])

  def eval_set(self) -> dict[str, np.ndarray]:
    """``eval_examples`` sequences that depend on ``structure_seed`` only, not on the run seed."""
    return self._examples([(_EVAL_STREAM, self.structure_seed, j)
                           for j in range(self.eval_examples)])
