//! Generation with the KV cache against the plain-Rust reference: logits after a chunked
//! prefill and after every decode step equal `reference::forward` on the whole prefix (which
//! proves the cache, the positions and the mask), greedy generation follows the reference's
//! argmax, the decode kernels pass the M4 constraint checker, the sampler's filters keep what
//! they promise, and the Hugging Face fixtures generate consistently with their own logits.

mod common;
use common::rel_err;

use std::path::Path;

use anetrain_device::SurfacePolicy;
use anetrain_device::{CpuDevice, Device, Kernel, Precision, Result as DeviceResult};
use anetrain_mil::{check, Chip, Program, WeightFiles};
use anetrain_model::config::ModelConfig;
use anetrain_model::generate::{
    argmax, DecodeKernels, DecodePlan, Generator, PrefillWidths, Sampler, SamplingOptions,
};
use anetrain_model::hf::{load_hf_dir, SafetensorsFile};
use anetrain_model::kernels::KernelForms;
use anetrain_model::params::Params;
use anetrain_model::reference;

/// Seeded weights with norm gains away from 1 and a larger embedding, so logits are spread
/// out (no near-ties for greedy) and a missing gain shows.
fn params(c: &ModelConfig, seed: u64) -> Params {
    let mut p = Params::init(c, seed).unwrap();
    for (name, mut t) in p.iter_mut() {
        if t.shape().len() == 1 {
            for (i, v) in t.data_mut().iter_mut().enumerate() {
                *v = 1.0 + 0.3 * ((i as f32 * 0.7 + name.len() as f32).sin());
            }
        } else if name.contains("embed") || name.contains("lm_head") {
            t.data_mut().iter_mut().for_each(|v| *v *= 20.0);
        } else if name.contains("q_proj") || name.contains("k_proj") {
            // Sharper attention, so a wrong mask or position moves the logits visibly.
            t.data_mut().iter_mut().for_each(|v| *v *= 8.0);
        }
    }
    p
}

fn tokens(c: &ModelConfig, n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97) >> 7) % c.vocab_size as u32)
        .collect()
}

fn cpu() -> Box<CpuDevice> {
    Box::new(CpuDevice::new(Precision::F32))
}

/// Reference next-token logits after the last token of `prefix`.
fn reference_last(c: &ModelConfig, p: &Params, prefix: &[u32]) -> Vec<f32> {
    let logits = reference::forward(c, p, &[prefix.to_vec()]).unwrap();
    logits.at(0, prefix.len() - 1).to_vec()
}

fn tiny_configs() -> Vec<ModelConfig> {
    ["tiny", "tiny-gqa", "tiny-qwen3"]
        .iter()
        .map(|n| ModelConfig::preset(n).unwrap())
        .collect()
}

#[test]
fn cached_logits_equal_the_reference_on_the_whole_prefix() {
    for c in tiny_configs() {
        let p = params(&c, 7);
        let mut g = Generator::new(&c, p.clone(), cpu(), 48).unwrap();
        // 37 tokens: a full 32-token chunk, then a partial one.
        let mut seq = tokens(&c, 37, 1);
        let got = g.feed(&seq).unwrap().to_vec();
        let e = rel_err(&got, &reference_last(&c, &p, &seq));
        assert!(e < 1e-4, "{:?} prefill: rel err {e}", c.family);
        for step in 0..6 {
            let next = (step * 31 + 5) as u32 % c.vocab_size as u32;
            seq.push(next);
            let got = g.feed(&[next]).unwrap().to_vec();
            let e = rel_err(&got, &reference_last(&c, &p, &seq));
            assert!(e < 1e-4, "{:?} decode step {step}: rel err {e}", c.family);
        }
        assert_eq!(g.position(), seq.len());
    }
}

#[test]
fn a_reset_cache_ignores_stale_entries() {
    let c = ModelConfig::preset("tiny-gqa").unwrap();
    let p = params(&c, 3);
    let mut g = Generator::new(&c, p.clone(), cpu(), 40).unwrap();
    g.feed(&tokens(&c, 40, 2)).unwrap();
    g.reset();
    let fresh = tokens(&c, 5, 9);
    let got = g.feed(&fresh).unwrap().to_vec();
    assert!(rel_err(&got, &reference_last(&c, &p, &fresh)) < 1e-4);
}

#[test]
fn greedy_generation_follows_the_reference_argmax() {
    for c in tiny_configs() {
        let p = params(&c, 11);
        let mut g = Generator::new(&c, p.clone(), cpu(), 40).unwrap();
        let prompt = tokens(&c, 9, 4);
        let mut out = Vec::new();
        let stats = g
            .generate(&prompt, 12, SamplingOptions::default(), |t| {
                out.push(t);
                true
            })
            .unwrap();
        assert_eq!(stats.prompt_tokens, 9);
        assert_eq!(stats.generated_tokens, 12);
        assert_eq!(out.len(), 12);
        let mut prefix = prompt.clone();
        for &t in &out {
            assert_eq!(t, argmax(&reference_last(&c, &p, &prefix)));
            prefix.push(t);
        }
    }
}

#[test]
fn generation_stops_at_eos_callback_and_max_seq() {
    let c = ModelConfig::preset("tiny").unwrap();
    let p = params(&c, 5);
    let mut g = Generator::new(&c, p.clone(), cpu(), 20).unwrap();
    let prompt = tokens(&c, 6, 8);
    let greedy = SamplingOptions::default();

    g.set_eos(Some(argmax(&reference_last(&c, &p, &prompt))));
    let stats = g.generate(&prompt, 10, greedy, |_| true).unwrap();
    assert_eq!(stats.generated_tokens, 0, "the first greedy token is EOS");

    g.set_eos(None);
    let mut seen = 0;
    let stats = g
        .generate(&prompt, 10, greedy, |_| {
            seen += 1;
            seen < 3
        })
        .unwrap();
    assert_eq!((stats.generated_tokens, seen), (3, 3));

    // 18 prompt tokens in a 20-token cache: two tokens are fed back, the third is predicted
    // from a full cache, then generation must stop.
    let stats = g
        .generate(&tokens(&c, 18, 2), 10, greedy, |_| true)
        .unwrap();
    assert_eq!(stats.generated_tokens, 3);
    assert_eq!(g.position(), 20);
    assert!(g.feed(&[1]).is_err(), "a full cache refuses more tokens");
}

/// The CPU device with the ANE's port rules: it gets the ANE's plan (32-wide chunks, one
/// cache length, weights and cache copied into the kernels), computed in fp32.
struct AneShaped(CpuDevice);

impl Device for AneShaped {
    fn name(&self) -> String {
        format!("{} with the ANE's port rules", self.0.name())
    }

    fn compile(&self, program: &Program, weights: &WeightFiles) -> DeviceResult<Box<dyn Kernel>> {
        self.0.compile(program, weights)
    }

    fn surface_policy(&self) -> Option<SurfacePolicy> {
        Some(SurfacePolicy::default())
    }
}

#[test]
fn width_one_decode_and_wide_prefill_equal_the_32_wide_kernels() {
    for c in tiny_configs() {
        let p = params(&c, 21);
        let max_seq = c.max_seq_len;
        let mut narrow = Generator::new(&c, p.clone(), cpu(), max_seq).unwrap();
        let ane = Box::new(AneShaped(CpuDevice::new(Precision::F32)));
        let mut wide = Generator::new(&c, p.clone(), ane, max_seq).unwrap();
        assert_eq!(narrow.plan().decode_width, 1);
        assert_eq!(narrow.plan().prefill, PrefillWidths::UpTo(max_seq));
        assert!(narrow.plan().cache_buckets.len() > 1, "{:?}", narrow.plan());
        assert_eq!(
            (wide.plan().decode_width, wide.plan().prefill),
            (32, PrefillWidths::Fixed(32))
        );
        // The fp16 CPU needs its own copy of every input, so it runs the ANE's plan too.
        let f16 = Box::new(CpuDevice::new(Precision::F16));
        let f16 = Generator::new(&c, p.clone(), f16, max_seq).unwrap();
        assert_eq!(f16.plan(), wide.plan());
        // Prompts shorter than, equal to and longer than a 32-wide chunk, and equal to a
        // compiled prefill width (16, 32); then decode steps across a cache bucket (32).
        for len in [1, 5, 16, 31, 32, 33, 45] {
            let prompt = tokens(&c, len, len as u32);
            narrow.reset();
            wide.reset();
            let a = narrow.feed(&prompt).unwrap().to_vec();
            let b = wide.feed(&prompt).unwrap().to_vec();
            let e = rel_err(&a, &b);
            assert!(e < 1e-5, "{:?} prompt {len}: rel err {e}", c.family);
            for step in 0..6 {
                let t = argmax(&a) as u32 ^ step;
                let a = narrow.feed(&[t]).unwrap().to_vec();
                let b = wide.feed(&[t]).unwrap().to_vec();
                let e = rel_err(&a, &b);
                assert!(
                    e < 1e-5,
                    "{:?} prompt {len} step {step}: rel err {e}",
                    c.family
                );
            }
        }
    }
}

/// Exact-fit prefill: each prompt runs in chunks as wide as what is left (at most 256), a
/// width compiled on first use and replaced by the next prompt's, so the logits after the
/// prompt and after each decode step equal the reference forward on the whole prefix. The
/// lengths cover one token, either side of a cache bucket (31, 33), the benchmark's 200, one
/// full widest chunk (256), a widest chunk plus one (257) and plus many (300), and a
/// sequence that ends exactly at the cache's last slot.
#[test]
fn exact_fit_prefill_equals_the_reference_for_many_prompt_lengths() {
    for mut c in tiny_configs() {
        c.max_seq_len = 320;
        let p = params(&c, 33);
        let mut g = Generator::new(&c, p.clone(), cpu(), c.max_seq_len).unwrap();
        assert_eq!(g.plan().prefill, PrefillWidths::UpTo(256));
        for (len, steps) in [
            (1, 3),
            (31, 3),
            (33, 2),
            (200, 2),
            (256, 1),
            (257, 1),
            (300, 2),
        ] {
            let mut seq = tokens(&c, len, len as u32);
            g.reset();
            let got = g.feed(&seq).unwrap().to_vec();
            let e = rel_err(&got, &reference_last(&c, &p, &seq));
            assert!(e < 1e-4, "{:?} prompt {len}: rel err {e}", c.family);
            for step in 0..steps {
                let t = (argmax(&got) as u32 ^ step) % c.vocab_size as u32;
                seq.push(t);
                let got = g.feed(&[t]).unwrap().to_vec();
                let e = rel_err(&got, &reference_last(&c, &p, &seq));
                assert!(
                    e < 1e-4,
                    "{:?} prompt {len} step {step}: rel err {e}",
                    c.family
                );
            }
        }
        // The last decode step writes the cache's last slot; one more is refused.
        let mut seq = tokens(&c, 318, 5);
        g.reset();
        g.feed(&seq).unwrap();
        seq.extend([3, 4]);
        g.feed(&seq[318..319]).unwrap();
        let got = g.feed(&seq[319..]).unwrap().to_vec();
        let e = rel_err(&got, &reference_last(&c, &p, &seq));
        assert!(e < 1e-4, "{:?} full cache: rel err {e}", c.family);
        assert!(g.feed(&[1]).is_err());
    }
}

#[test]
fn bad_input_is_refused_with_a_message() {
    let c = ModelConfig::preset("tiny").unwrap();
    let p = params(&c, 5);
    assert!(Generator::new(&c, p.clone(), cpu(), c.max_seq_len + 1).is_err());
    let mut g = Generator::new(&c, p, cpu(), 16).unwrap();
    let opts = SamplingOptions::default();
    assert!(g.generate(&[], 4, opts, |_| true).is_err());
    let err = g.feed(&[c.vocab_size as u32]).unwrap_err().to_string();
    assert!(err.contains("vocabulary"), "{err}");
    assert!(g.feed(&tokens(&c, 17, 1)).is_err());
}

#[test]
fn decode_kernels_pass_the_m4_checker_for_the_stories_models() {
    for name in ["stories15M", "stories110M"] {
        let c = ModelConfig::preset(name).unwrap();
        let plan = DecodePlan::new(&c, c.max_seq_len, Some(SurfacePolicy::default())).unwrap();
        let (w, t) = (plan.decode_width, plan.cache_len());
        let kernels = DecodeKernels::build(&c, &plan, w, t, KernelForms::default()).unwrap();
        for (kernel, bundle) in kernels.named() {
            let report = check(&bundle.program, Chip::M4);
            assert!(report.is_clean(), "{name} {kernel}:\n{report}");
        }
    }
}

// ---- sampler ----

fn logits_fixture() -> Vec<f32> {
    vec![1.0, 3.0, 0.5, 2.5, -1.0, 2.0, 0.0, 3.0]
}

fn sampler(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> Sampler {
    Sampler::new(SamplingOptions {
        temperature,
        top_k,
        top_p,
        seed,
    })
    .unwrap()
}

#[test]
fn top_k_keeps_exactly_k_most_likely_candidates() {
    let l = logits_fixture();
    for k in 1..=l.len() {
        let mut s = sampler(1.0, k, 1.0, 0);
        let d = s.distribution(&l).unwrap().to_vec();
        assert_eq!(d.len(), k);
        // Every kept logit is ≥ every dropped one.
        let kept_min = d
            .iter()
            .map(|&(t, _)| l[t as usize])
            .fold(f32::INFINITY, f32::min);
        for (i, &v) in l.iter().enumerate() {
            if !d.iter().any(|&(t, _)| t as usize == i) {
                assert!(v <= kept_min);
            }
        }
        let total: f64 = d.iter().map(|&(_, p)| p).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
    // Ties are broken by the lower id: tokens 1 and 7 share the top logit.
    let d = sampler(1.0, 1, 1.0, 0).distribution(&l).unwrap().to_vec();
    assert_eq!(d, vec![(1, 1.0)]);
}

#[test]
fn top_p_keeps_the_smallest_prefix_reaching_p() {
    let l = logits_fixture();
    let t = 0.7f64;
    // Independent softmax, sorted by probability.
    let max = 3.0f64;
    let mut probs: Vec<(usize, f64)> = l
        .iter()
        .enumerate()
        .map(|(i, &v)| (i, ((v as f64 - max) / t).exp()))
        .collect();
    let z: f64 = probs.iter().map(|p| p.1).sum();
    probs.iter_mut().for_each(|p| p.1 /= z);
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    for top_p in [0.05f32, 0.3, 0.5, 0.8, 0.95, 0.999] {
        let want = {
            let mut mass = 0.0;
            let mut n = 0;
            while mass < top_p as f64 {
                mass += probs[n].1;
                n += 1;
            }
            n
        };
        let d = sampler(t as f32, 0, top_p, 0)
            .distribution(&l)
            .unwrap()
            .to_vec();
        assert_eq!(d.len(), want, "top_p {top_p}");
        let ids: Vec<usize> = d.iter().map(|&(i, _)| i as usize).collect();
        let expect: Vec<usize> = probs[..want].iter().map(|p| p.0).collect();
        assert_eq!(ids, expect);
    }
}

#[test]
fn near_zero_temperature_equals_greedy() {
    let l = vec![0.3, 1.7, 1.69, -2.0, 0.0];
    let mut greedy = sampler(0.0, 0, 1.0, 1);
    let mut cold = sampler(1e-3, 0, 1.0, 1);
    for _ in 0..50 {
        assert_eq!(greedy.sample(&l).unwrap(), 1);
        assert_eq!(cold.sample(&l).unwrap(), 1);
    }
}

#[test]
fn one_seed_gives_one_sequence() {
    let l = logits_fixture();
    let draw = |seed| {
        let mut s = sampler(1.3, 5, 0.9, seed);
        (0..64).map(|_| s.sample(&l).unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
}

#[test]
fn draws_follow_the_softmax_frequencies() {
    let l = [0.0f32, 1.0, 2.0, -10.0];
    let z: f64 = l.iter().map(|&v| (v as f64).exp()).sum();
    let mut s = sampler(1.0, 0, 1.0, 9);
    let n = 20_000;
    let mut counts = [0usize; 4];
    for _ in 0..n {
        counts[s.sample(&l).unwrap() as usize] += 1;
    }
    for (i, &cnt) in counts.iter().enumerate() {
        let want = (l[i] as f64).exp() / z;
        let got = cnt as f64 / n as f64;
        // Four standard deviations of a binomial proportion, plus slack.
        let tol = 4.0 * (want * (1.0 - want) / n as f64).sqrt() + 1e-3;
        assert!((got - want).abs() < tol, "token {i}: {got} vs {want}");
    }
}

#[test]
fn invalid_sampling_options_are_refused() {
    let bad = |temperature, top_p| {
        Sampler::new(SamplingOptions {
            temperature,
            top_k: 0,
            top_p,
            seed: 0,
        })
        .is_err()
    };
    assert!(bad(-0.5, 1.0));
    assert!(bad(f32::NAN, 1.0));
    assert!(bad(1.0, 0.0));
    assert!(bad(1.0, 1.5));
    assert!(sampler(1.0, 0, 1.0, 0).distribution(&[]).is_err());
}

// ---- shared Hugging Face fixtures ----

fn read_row(dir: &Path, seq: usize) -> Vec<u32> {
    let bytes = std::fs::read(dir.join("tokens.bin")).unwrap();
    bytes
        .chunks_exact(4)
        .take(seq + 1)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn shared_fixtures_generate_consistently_with_their_logits() {
    let root = Path::new("/work/shared/fixtures");
    if !root.is_dir() {
        eprintln!("skipped: {} is absent", root.display());
        return;
    }
    for name in ["llama_mha", "llama_gqa_tied", "qwen3_gqa"] {
        let dir = root.join(name);
        let (c, p) = load_hf_dir(&dir).unwrap();
        let hf = SafetensorsFile::open(&dir.join("grads.safetensors"))
            .unwrap()
            .read("logits")
            .unwrap();
        let &[_, seq, v] = hf.shape() else {
            panic!("logits shape {:?}", hf.shape())
        };
        let row = read_row(&dir, seq);
        let hf_at = |t: usize| &hf.data()[t * v..(t + 1) * v];
        let mut g = Generator::new(&c, p, cpu(), seq).unwrap();
        // Teacher forcing: a 5-token prefill, then one token per decode step.
        let got = g.feed(&row[..5]).unwrap().to_vec();
        assert!(rel_err(&got, hf_at(4)) < 1e-4, "{name} prefill");
        for t in 5..seq {
            let got = g.feed(&row[t..t + 1]).unwrap().to_vec();
            assert!(rel_err(&got, hf_at(t)) < 1e-4, "{name} position {t}");
            assert_eq!(argmax(&got), argmax(hf_at(t)), "{name} position {t}");
        }
        // Greedy from the whole row: the first token is Hugging Face's argmax.
        let mut first = None;
        g.generate(&row[..seq], 1, SamplingOptions::default(), |t| {
            first = Some(t);
            true
        })
        .unwrap();
        assert_eq!(first, Some(argmax(hf_at(seq - 1))), "{name}");
    }
}
