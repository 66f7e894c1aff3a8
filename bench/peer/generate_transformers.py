"""The transformers peer of `anetrain bench generate`: greedy decoding with a KV cache.

Builds (once) a random Llama model of a stories preset's shape and saves it as a Hugging Face
directory, so `anetrain bench generate --model DIR` runs the very same weights. Prompts are
the ones `bench generate` builds: token 1, then SplitMix64-seeded ids. For each prompt length
it reports the prefill time (one forward over the prompt, filling the cache) and the decode
speed in steps per second (each generated token after the first costs one step), medians of
`--runs` timed runs after one untimed run, like `bench generate`.
"""

import argparse
import os
import statistics
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.generation.streamers import BaseStreamer

# (dim, layers, heads, hidden) of anetrain's presets; vocab 32000, 256 positions, tied.
PRESETS = {
    "stories15M": (288, 6, 6, 768),
    "stories42M": (512, 8, 8, 1376),
    "stories110M": (768, 12, 12, 2048),
}
MASK = (1 << 64) - 1
GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def prompt(length, vocab, seed):
    """bench generate's prompt: token 1, then SplitMix64 `below(vocab)` draws."""
    state, ids = seed, []
    for i in range(length):
        if i == 0:
            ids.append(min(1, vocab - 1))
            continue
        state = (state + GOLDEN_GAMMA) & MASK
        ids.append((mix64(state) * vocab) >> 64)
    return ids


class Stamps(BaseStreamer):
    """The time each generated token is handed over (the first `put` is the prompt)."""

    def __init__(self):
        self.times, self.calls = [], 0

    def put(self, value):
        self.calls += 1
        if self.calls > 1:
            self.times.append(time.perf_counter())

    def end(self):
        pass


def model_dir(preset, out, seed):
    """A saved random model of `preset`'s shape (created on first use)."""
    if not os.path.exists(os.path.join(out, "config.json")):
        dim, layers, heads, hidden = PRESETS[preset]
        config = LlamaConfig(
            vocab_size=32000,
            hidden_size=dim,
            intermediate_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=2,
        )
        torch.manual_seed(seed)
        LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="stories15M", choices=sorted(PRESETS))
    ap.add_argument("--dir", help="where the model lives (default /tmp/peer-<model>)")
    ap.add_argument("--prompts", default="1,200")
    ap.add_argument("--tokens", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--attn",
        default="eager",
        choices=["eager", "sdpa"],
        help="attention implementation (torch 2.15's CPU flash SDPA takes ~12 ms per call "
        "for one query on this machine, so eager is the faster peer)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = model_dir(args.model, args.dir or f"/tmp/peer-{args.model}", args.seed)
    model = LlamaForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation=args.attn
    ).eval()
    print(
        f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
        f"{args.model} at {path}, {args.attn} attention, greedy with a KV cache, {args.tokens} tokens, "
        f"median of {args.runs} runs, {torch.get_num_threads()} threads"
    )
    for length in [int(p) for p in args.prompts.split(",")]:
        ids = torch.tensor([prompt(length, 32000, args.seed)])
        prefill, decode, first = [], [], None
        for run in range(args.runs + 1):
            with torch.inference_mode():
                started = time.perf_counter()
                model(ids, use_cache=True)
                prefill_ms = (time.perf_counter() - started) * 1e3
                stamps = Stamps()
                out = model.generate(
                    ids,
                    max_new_tokens=args.tokens,
                    min_new_tokens=args.tokens,
                    do_sample=False,
                    use_cache=True,
                    pad_token_id=0,
                    streamer=stamps,
                )
            # As bench generate: the first token comes from the prefill, each later one is a step.
            steps = len(stamps.times) - 1
            decode_s = stamps.times[-1] - stamps.times[0]
            tokens = out[0, length:].tolist()
            if first is None:
                first = tokens
            elif tokens != first:
                raise SystemExit("greedy runs disagree")
            if run > 0:
                prefill.append(prefill_ms)
                decode.append(steps / decode_s)
        print(
            f"prompt {length:>4} tokens: prefill {statistics.median(prefill):7.1f} ms, "
            f"decode {statistics.median(decode):6.1f} tok/s; first tokens {first[:8]}"
        )


if __name__ == "__main__":
    main()
