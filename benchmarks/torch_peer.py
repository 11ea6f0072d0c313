"""The quickstart GPT in PyTorch, timed alternately with optlab's training loop in one run.

    pip install -e '.[bench]'   # torch: only this benchmark needs it
    python benchmarks/torch_peer.py [--rounds 4] [--steps 5] [--warmup 2] \
        [--config configs/quickstart.py]

Two worker processes, one per framework, each built once and then asked in turn for a round of
``--warmup`` + ``--steps`` + 1 training steps from a fresh start (the first framework alternates
round by round; a first round of each is a warm-up and not counted), so both see the same
machine at nearly the same time; a round's figure is the median of its last ``--steps`` steps:

* optlab: ``training.execute`` over the config with precompiled programs (data, the jitted
  step, metrics fetched one step late; each step's time from its records' ``time_s``, a metric
  line every step), then the bare jitted train step on one fixed batch, ``--steps`` calls
  after ``--warmup``;
* torch: the same model written here in eager PyTorch (``torch_gpt``; attention through
  ``scaled_dot_product_attention``) with ``torch.optim.AdamW`` (its default implementation) on
  the same hyperparameters, schedule, clipping and weight-decay mask, drawing its batches from
  the same optlab data source, the loss read every step.

The model's shape, optimizer and data come from the config, so the two cannot drift apart: the
parameter counts and the decayed parameter counts are printed and asserted equal. MFU uses the
GPT's 6N + 12LDT FLOPs per token (PaLM) over each framework's own best f32 matmul rate in its
worker. Both workers get the environment this process has (the launch settings of ``train.py``,
the malloc ones left out for torch with ``--torch-default-malloc``) and its CPU affinity. XLA
flags do not hold XLA to one thread (its matmul library keeps its own pool: the "one thread"
flags left the step and the matmul peak unchanged, measured), so a one-core comparison pins the
whole process tree: ``taskset -c 0 python benchmarks/torch_peer.py --torch-threads 1``. On a
shared machine, compare thread counts too: torch's OpenMP threads wait for each other at every
operation, so a neighbour on one core slows all of them.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import train  # noqa: E402  (for the malloc settings the command line uses)

# ---------------------------------------------------------------------------------------------
# The PyTorch model and its training step (the torch worker only imports torch).


def torch_gpt(model_cfg):
  """The optlab GPT of ``model_cfg`` (``models/gpt.py``) as a ``torch.nn.Module``.

  Pre-norm blocks; fused QKV split as (3, heads, head size) like optlab's; dense layers without
  bias unless ``use_bias``; flax's norm epsilon (1e-6); learned positions; an untied head
  unless ``tie_embeddings``; N(0, 0.02) weights, the two residual-output projections at
  0.02 / sqrt(2 depth).
  """
  import torch
  from torch import nn
  from torch.nn import functional as F

  m = model_cfg
  if m.attention != "softmax":
    raise ValueError(f"model.attention={m.attention!r}: the torch peer has softmax attention only")
  activations = {"gelu": lambda x: F.gelu(x, approximate="none"),
                 "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "relu": F.relu}
  norms = {"layer": lambda d: nn.LayerNorm(d, eps=1e-6),
           "rms": lambda d: nn.RMSNorm(d, eps=1e-6), "none": lambda d: nn.Identity()}
  if m.activation not in activations or m.norm not in norms:
    raise ValueError(f"model.activation={m.activation!r} / model.norm={m.norm!r}: the torch "
                     f"peer has {', '.join(activations)} / {', '.join(norms)}")
  D, H, F_, V, L = m.width, m.num_heads, m.mlp_ratio * m.width, m.vocab_size, m.depth
  act, norm, out_std = activations[m.activation], norms[m.norm], 0.02 / math.sqrt(2 * L)

  def dense(d_in, d_out, std):
    layer = nn.Linear(d_in, d_out, bias=m.use_bias)
    nn.init.normal_(layer.weight, std=std)
    if m.use_bias:
      nn.init.zeros_(layer.bias)
    return layer

  class Block(nn.Module):

    def __init__(self):
      super().__init__()
      self.attn_norm, self.mlp_norm = norm(D), norm(D)
      self.qkv, self.attn_out = dense(D, 3 * D, 0.02), dense(D, D, out_std)
      self.mlp_in, self.mlp_out = dense(D, F_, 0.02), dense(F_, D, out_std)

    def forward(self, x_BxTxD):
      B, T, _ = x_BxTxD.shape
      qkv = self.qkv(self.attn_norm(x_BxTxD)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
      o_BxHxTxK = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)
      x_BxTxD = x_BxTxD + self.attn_out(o_BxHxTxK.transpose(1, 2).reshape(B, T, D))
      return x_BxTxD + self.mlp_out(act(self.mlp_in(self.mlp_norm(x_BxTxD))))

  class GPT(nn.Module):

    def __init__(self):
      super().__init__()
      self.embedding = nn.Embedding(V, D)
      self.pos_embedding = nn.Parameter(torch.empty(m.max_len, D))
      nn.init.normal_(self.embedding.weight, std=0.02)
      nn.init.normal_(self.pos_embedding, std=0.02)
      self.blocks = nn.ModuleList([Block() for _ in range(L)])
      self.final_norm = norm(D)
      self.head = None if m.tie_embeddings else dense(D, V, 0.02)

    def forward(self, tokens_BxT):
      x = self.embedding(tokens_BxT) + self.pos_embedding[:tokens_BxT.shape[1]]
      for block in self.blocks:
        x = block(x)
      x = self.final_norm(x)
      return x @ self.embedding.weight.T if self.head is None else self.head(x)

  return GPT()


def decayed(model) -> list:
  """The parameters AdamW decays: all but the norms' (and the biases'), as optlab's default
  ``optimizer.decay_roles`` (embedding, hidden, head, conv) leaves them."""
  from torch import nn
  no_decay = set()
  for module in model.modules():
    if isinstance(module, nn.LayerNorm | nn.RMSNorm):
      no_decay.update(id(p) for p in module.parameters())
  return [p for name, p in model.named_parameters()
          if id(p) not in no_decay and not name.endswith("bias")]


def warmup_cosine(schedule_cfg, total_steps: int):
  """``optax.warmup_cosine_decay_schedule(0, 1, warmup, total, end_factor)`` as a function of
  the step: the learning rate's shape, which the optimizer multiplies by the peak."""
  if schedule_cfg.name != "warmup_cosine":
    raise ValueError(f"optimizer.schedule.name={schedule_cfg.name!r}: the torch peer has "
                     f"warmup_cosine only")
  warmup, end = schedule_cfg.warmup_steps, schedule_cfg.end_factor
  decay = max(total_steps, warmup + 1) - warmup

  def shape(step: int) -> float:
    if step < warmup:
      return step / warmup
    frac = min(step - warmup, decay) / decay
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * frac))
  return shape


def torch_matmul_peak(sizes=(1024, 2048, 3072), reps=5) -> float:
  """Best f32 FLOP/s of ``torch.mm`` on square matrices (as ``step.matmul_rates`` for XLA)."""
  import torch
  best = 0.0
  for n in sizes:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
      torch.mm(a, b)
    for _ in range(reps):
      t = time.perf_counter()
      torch.mm(a, b)
      best = max(best, 2 * n**3 / (time.perf_counter() - t))
  return best


class TorchRunner:
  """The torch side: model, AdamW, schedule and optlab's data source; rounds of steps."""

  def __init__(self, config):
    import torch

    import data
    self.torch, self.config = torch, config
    self.source = data.build(config.data, seed=config.seed)
    self.start()

  def start(self):
    """A fresh model, optimizer and schedule at the start of the stream (as a new run)."""
    torch, config = self.torch, self.config
    torch.manual_seed(config.seed)
    o, t = config.optimizer, config.train
    if o.name != "adamw":
      raise ValueError(f"optimizer.name={o.name!r}: the torch peer has adamw only")
    if t.num_microbatches != 1:
      raise ValueError("train.num_microbatches must be 1 for the torch peer")
    self.model = torch_gpt(config.model)
    decay = decayed(self.model)
    rest = [p for p in self.model.parameters() if all(p is not q for q in decay)]
    self.optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=o.learning_rate, betas=(o.kwargs.b1, o.kwargs.b2), eps=o.kwargs.eps)
    self.schedule = torch.optim.lr_scheduler.LambdaLR(
        self.optimizer, warmup_cosine(o.schedule, t.steps))
    self.params = sum(p.numel() for p in self.model.parameters())
    self.decayed_params = sum(p.numel() for p in decay)
    self.seen = 0

  def step(self):
    torch, cfg = self.torch, self.config
    batch = self.source.examples(self.seen, cfg.train.global_batch)
    self.seen += cfg.train.global_batch
    inputs = torch.from_numpy(batch["inputs"]).long()
    targets = torch.from_numpy(batch["targets"]).long()
    logits = self.model(inputs)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1))
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.optimizer.grad_clip_norm:
      torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optimizer.grad_clip_norm)
    self.optimizer.step()
    self.schedule.step()
    return loss.detach()

  def round(self, steps: int, warmup: int) -> dict:
    """A fresh start, then ``train.steps`` steps, the loss read at the config's log steps; the
    median of the last ``steps`` (``warmup``: the steps before them, set in the config)."""
    del warmup
    self.start()
    times, losses = [], []
    for i in range(self.config.train.steps):
      start = time.perf_counter()
      loss = self.step()
      if (i + 1) % self.config.train.log_every == 0:
        losses.append(float(loss))
      times.append(time.perf_counter() - start)
    timed = times[-steps:]
    return {"loop_s": statistics.median(timed), "loop_times_s": timed, "last_loss": losses[-1]}


# ---------------------------------------------------------------------------------------------
# The optlab side.


class OptlabRunner:
  """The optlab side: ``training.execute`` with programs compiled once, and the bare step."""

  def __init__(self, config):
    import training
    from benchmarks import step as step_bench
    self.training, self.step_bench = training, step_bench
    self.tmp = tempfile.mkdtemp(prefix="optlab-torch-peer-")
    self.setup = training.prepare(config, os.path.join(self.tmp, "round-0"))
    self.compiled = training.compile_steps(self.setup)
    self.rounds = 0

  def round(self, steps: int, warmup: int) -> dict:
    """A fresh run of ``train.steps`` steps through ``training.execute`` (the median of its
    last ``steps``), then ``steps`` bare steps after ``warmup``."""
    import dataclasses
    import shutil
    self.rounds += 1
    setup = dataclasses.replace(self.setup, workdir=os.path.join(self.tmp, f"round-{self.rounds}"))
    loop, _ = self.step_bench.loop_step_times(setup, self.compiled)
    shutil.rmtree(setup.workdir, ignore_errors=True)
    bare, _ = self.step_bench.bare_step_times(self.setup, steps, self.compiled, warmup=warmup)
    timed = loop[-steps:]
    return {"loop_s": statistics.median(timed), "loop_times_s": timed, "bare_s": bare}

  def close(self) -> None:
    import shutil
    shutil.rmtree(self.tmp, ignore_errors=True)


def peer_config(spec: str, steps: int, warmup: int):
  """The config of a benchmark round: ``warmup + steps + 1`` updates, a metric line each, no
  learning-rate warmup, no evaluation, one checkpoint at the end (both frameworks run it)."""
  from training import cli
  config = cli.load_config(spec)
  with config.unlocked():
    config.train.steps = warmup + steps + 1  # a round: warm-up steps, then the timed ones
    config.train.log_every = 1  # optlab: a time_s for every step; torch: the loss read each step
    config.optimizer.schedule.warmup_steps = 0
    config.train.eval_every = 0
    config.train.checkpoint_every = 10**9
  return config


def worker(kind: str, spec: str, steps: int, warmup: int, torch_threads: int) -> None:
  """Serves on stdin/stdout: one JSON line when ready, then one per ``peak`` (the f32 matmul
  peak) or ``round`` line; anything else ends it."""
  reply = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)  # whatever the libraries print goes to the log, not into the replies
  config = peer_config(spec, steps, warmup)
  if kind == "torch":
    import torch
    if torch_threads:
      torch.set_num_threads(torch_threads)
    runner = TorchRunner(config)
    peak = torch_matmul_peak
    ready = {"params": runner.params, "decayed_params": runner.decayed_params,
             "version": torch.__version__, "threads": torch.get_num_threads()}
  else:
    import jax

    import models
    runner = OptlabRunner(config)
    setup = runner.setup
    roles = models.param_roles(setup.abstract_state.params)
    decay = sum(p.size for p, r in zip(jax.tree.leaves(setup.abstract_state.params),
                                       jax.tree.leaves(roles), strict=True)
                if r in config.optimizer.decay_roles)
    peak = runner.step_bench.matmul_peak
    ready = {"params": setup.num_params, "decayed_params": decay, "version": jax.__version__,
             "compile_s": runner.compiled.compile_s,
             "flops_per_step": config.train.global_batch * setup.flops_per_example,
             "xla_flops_per_step": runner.step_bench.xla_flops(runner.compiled.train)}
  ready["tokens_per_step"] = config.train.global_batch * config.data.seq_len
  print(json.dumps(ready), file=reply)
  for line in sys.stdin:
    if line.strip() == "peak":
      print(json.dumps({"peak": peak()}), file=reply)
    elif line.strip() == "round":
      print(json.dumps(runner.round(steps, warmup)), file=reply)
    else:
      break
  if isinstance(runner, OptlabRunner):
    runner.close()


# ---------------------------------------------------------------------------------------------
# The parent: starts both workers and alternates them.


class Worker:

  def __init__(self, kind: str, args, env: dict):
    self.kind = kind
    self.log_path = os.path.join(tempfile.gettempdir(), f"optlab-torch-peer-{kind}.log")
    self.log = open(self.log_path, "w")
    self.proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--worker", kind, "--config", args.config,
         "--steps", str(args.steps), "--warmup", str(args.warmup),
         "--torch-threads", str(args.torch_threads)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
        env=env)

  def read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      self.log.flush()
      with open(self.log_path) as f:
        tail = "".join(f.readlines()[-15:])
      raise SystemExit(f"the {self.kind} worker stopped; the end of {self.log_path}:\n{tail}")
    return json.loads(line)

  def ask(self, command: str) -> dict:
    self.proc.stdin.write(f"{command}\n")
    self.proc.stdin.flush()
    return self.read()

  def close(self) -> None:
    if self.proc.poll() is None:
      self.proc.stdin.close()
      self.proc.wait(timeout=60)
    self.log.close()


def _spread(values) -> str:
  return (f"{statistics.median(values) * 1e3:7.1f}  "
          f"({min(values) * 1e3:.0f}–{max(values) * 1e3:.0f})")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--rounds", type=int, default=4, help="counted rounds of each framework")
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps at a round's start")
  parser.add_argument("--torch-threads", type=int, default=0,
                      help="torch.set_num_threads in the torch worker (0: torch's default)")
  parser.add_argument("--torch-default-malloc", action="store_true",
                      help="start the torch worker without train.py's GLIBC_TUNABLES")
  parser.add_argument("--worker", choices=("optlab", "torch"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(args.worker, args.config, args.steps, args.warmup, args.torch_threads)
    return
  train.reexec_with_launch_env()  # both workers inherit the settings of the CLI

  torch_env = dict(os.environ)
  if args.torch_default_malloc:
    torch_env.pop("GLIBC_TUNABLES", None)
    torch_env["OPTLAB_NO_REEXEC"] = "1"
  workers = {"optlab": Worker("optlab", args, dict(os.environ)),
             "torch": Worker("torch", args, torch_env)}
  try:
    ready = {kind: w.read() for kind, w in workers.items()}
    o, t = ready["optlab"], ready["torch"]
    print(f"parameters: optlab {o['params']:,}, torch {t['params']:,}; decayed: optlab "
          f"{o['decayed_params']:,}, torch {t['decayed_params']:,}")
    assert o["params"] == t["params"], "the two models differ in size"
    assert o["decayed_params"] == t["decayed_params"], "the weight-decay masks differ"
    for kind, w in workers.items():  # one at a time, once both are built
      ready[kind].update(w.ask("peak"))
    results = {"optlab": [], "torch": []}
    for r in range(args.rounds + 1):  # round 0 warms both up and is not counted
      order = ("optlab", "torch") if r % 2 == 0 else ("torch", "optlab")
      for kind in order:
        result = workers[kind].ask("round")
        if r:
          results[kind].append(result)
      print(f"round {r}{' (warm-up)' if not r else ''}: done", file=sys.stderr, flush=True)
  finally:
    for w in workers.values():
      w.close()

  tokens, flops = o["tokens_per_step"], o["flops_per_step"]
  loops = {k: [x["loop_s"] for x in v] for k, v in results.items()}
  loop_steps = {k: [s for x in v for s in x["loop_times_s"]] for k, v in results.items()}
  bare = [s for x in results["optlab"] for s in x["bare_s"]]
  print(f"config {args.config}: batch of {tokens:,} tokens, {flops / 1e9:.2f} GFLOP/step "
        f"(6N+12LDT; XLA counts {o['xla_flops_per_step'] / 1e9:.2f}); jax {o['version']}, "
        f"torch {t['version']} ({t['threads']} threads); f32 matmul peak XLA "
        f"{o['peak'] / 1e9:.0f}, torch {t['peak'] / 1e9:.0f} GFLOP/s; optlab compile "
        f"{o['compile_s']:.1f} s; {args.rounds} rounds x {args.steps} steps after "
        f"{args.warmup}, alternated\n")
  print("| | ms/step median of all timed steps (min–max) | tokens/s | MFU (own peak) |")
  print("|---|---|---|---|")
  rows = (("optlab loop (training.execute)", loop_steps["optlab"], o["peak"]),
          ("optlab bare jitted step", bare, o["peak"]),
          ("torch eager loop", loop_steps["torch"], t["peak"]))
  for name, values, peak in rows:
    med = statistics.median(values)
    print(f"| {name} | {_spread(values)} | {tokens / med:8.0f} | {flops / med / peak:.2f} |")
  ratios = [a / b for a, b in zip(loops["optlab"], loops["torch"], strict=True)]  # per round
  bare_rounds = [statistics.median(x["bare_s"]) for x in results["optlab"]]
  bare_ratios = [a / b for a, b in zip(bare_rounds, loops["torch"], strict=True)]
  print(f"\noptlab loop / torch: {statistics.median(ratios):.2f} (rounds "
        f"{min(ratios):.2f}–{max(ratios):.2f}); optlab bare / torch: "
        f"{statistics.median(bare_ratios):.2f} ({min(bare_ratios):.2f}–{max(bare_ratios):.2f})")


if __name__ == "__main__":
  main()
