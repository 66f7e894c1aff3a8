"""PyTorch peer of `anetrain bench train`: the same training step on the same shapes.

One step = forward, mean next-token cross-entropy, backward, clip-norm 1.0 and fused AdamW,
fp32 on the CPU, on a new random batch every step, after 3 untimed warm-up steps. Prints the
median ms/step of the timed steps and the process's peak RSS, for eager mode and (with
--compile) torch.compile. A tool for the comparison tables, not a test.

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE /work/peer-venv/bin/python bench/peer/train_torch.py \
        --model stories15M --batch 1 --steps 5 [--compile]
"""

import argparse
import resource
import statistics
import time

import torch
import transformers

# The presets of anetrain's `ModelConfig::preset` (crates/model/src/config.rs).
STORIES = dict(vocab_size=32000, num_key_value_heads=None, tie_word_embeddings=True,
               rope_theta=10000.0, rms_norm_eps=1e-5, max_position_embeddings=256)
PRESETS = {
    "stories15M": ("llama", dict(hidden_size=288, num_hidden_layers=6, num_attention_heads=6,
                                 intermediate_size=768, **STORIES)),
    "stories42M": ("llama", dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                                 intermediate_size=1376, **STORIES)),
    "stories110M": ("llama", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=2048, **STORIES)),
    "qwen3-0.6b": ("qwen3", dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                                 num_key_value_heads=8, head_dim=128, intermediate_size=3072,
                                 vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6,
                                 rms_norm_eps=1e-6, max_position_embeddings=256)),
}


def build(name):
    family, fields = PRESETS[name]
    fields = dict(fields)
    if fields.get("num_key_value_heads") is None:
        fields["num_key_value_heads"] = fields["num_attention_heads"]
    if family == "llama":
        config = transformers.LlamaConfig(**fields)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen3Config(**fields)
        model = transformers.Qwen3ForCausalLM(config)
    return model.float().train(), config.vocab_size


def peak_rss_mib():
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="stories15M", choices=sorted(PRESETS))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="time torch.compile of the forward")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model, vocab = build(args.model)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, fused=True)
    forward = torch.compile(model) if args.compile else model
    gen = torch.Generator().manual_seed(7)

    def step():
        # seq + 1 tokens per row: inputs and their next-token targets, new every step.
        batch = torch.randint(0, vocab, (args.batch, args.seq + 1), generator=gen)
        x, y = batch[:, :-1], batch[:, 1:]
        logits = forward(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    samples, losses = [], []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        losses.append(step())
        ms = (time.perf_counter() - start) * 1e3
        if i >= args.warmup:
            samples.append(ms)
    n_params = sum(t.numel() for t in model.parameters())
    mode = "torch.compile" if args.compile else "eager"
    print(f"torch {torch.__version__} {mode}, {args.model} ({n_params / 1e6:.1f}M params), "
          f"batch {args.batch} x seq {args.seq}, {args.threads} threads: "
          f"{statistics.median(samples):.2f} ms/step (median of {args.steps}), "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}, peak RSS {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
