//! A built-in synthetic story corpus for the quick start and the tests.
//!
//! Short children's stories from a small grammar of characters, places, objects and events,
//! generated from a seed. The grammar is fixed and repetitive on purpose: a sentence template
//! recurs in every story and names and objects come back within a story, so even a tiny model's
//! loss falls visibly within about a hundred steps, with nothing to download.

use crate::error::{DataError, Result};
use crate::rng::SplitMix64;
use crate::stream::Tokens;
use crate::text::{tokenize_documents_of, CHUNK_BYTES};
use crate::tokenizer::Tokenizer;

/// A story character: name, subject pronoun, possessive, and what they are.
#[derive(Clone, Copy)]
struct Character {
    name: &'static str,
    pronoun: &'static str,
    possessive: &'static str,
    kind: &'static str,
}

/// The most tokens `synthetic:N` generates (4 GB in memory): a demo corpus, not a dataset.
pub const MAX_SYNTHETIC_TOKENS: usize = 1_000_000_000;

const fn girl(name: &'static str) -> Character {
    Character {
        name,
        pronoun: "She",
        possessive: "her",
        kind: "girl",
    }
}

const fn boy(name: &'static str) -> Character {
    Character {
        name,
        pronoun: "He",
        possessive: "his",
        kind: "boy",
    }
}

const CHARACTERS: &[Character] = &[
    girl("Lily"),
    boy("Tom"),
    girl("Mia"),
    boy("Ben"),
    girl("Sue"),
    boy("Max"),
    girl("Anna"),
    boy("Sam"),
];
const TRAITS: &[&str] = &["little", "kind", "happy", "curious", "brave"];
const PLACES: &[&str] = &["park", "forest", "beach", "garden", "farm", "river"];
const COLORS: &[&str] = &["red", "blue", "green", "yellow", "shiny", "big"];
const OBJECTS: &[&str] = &["ball", "kite", "box", "hat", "book", "shell"];
const SPOTS: &[&str] = &["a tree", "a rock", "a bench", "a bush"];
const FEELINGS: &[&str] = &["happy", "surprised", "excited", "proud"];

/// The middle sentences; `{n}` name, `{p}` pronoun, `{f}` friend, `{o}` object, `{l}` place,
/// `{e}` feeling.
const EVENTS: &[&str] = &[
    "{p} showed the {o} to {f}.",
    "{f} wanted to play with the {o} too.",
    "{n} and {f} played with the {o} all day.",
    "Then it started to rain, so {n} put the {o} in a bag.",
    "A little dog ran to {n} and barked at the {o}.",
    "{n} gave the {o} to {f}, and {f} said thank you.",
    "The wind took the {o} away, and {n} ran after it.",
];

/// The closing sentences, same placeholders as [`EVENTS`].
const ENDINGS: &[&str] = &[
    "{n} was very {e}. The end.",
    "From that day on, {n} and {f} went to the {l} every day.",
    "{n} went home and told {f} about the {o}. The end.",
];

/// An endless, deterministic sequence of synthetic stories; the same seed gives the same text on
/// every platform (the generator is this crate's own SplitMix64).
pub struct SyntheticStories {
    rng: SplitMix64,
}

impl SyntheticStories {
    /// The story sequence for `seed`.
    pub fn new(seed: u64) -> Self {
        SyntheticStories {
            rng: SplitMix64::new(seed),
        }
    }

    /// Whole stories of the `seed` sequence tokenized with a BOS before each (the llama2.c
    /// layout), until at least `n_tokens_target` tokens; the last story is never cut short.
    pub fn generate(
        seed: u64,
        n_tokens_target: usize,
        tokenizer: &dyn Tokenizer,
    ) -> Result<Tokens> {
        if n_tokens_target > MAX_SYNTHETIC_TOKENS {
            return Err(DataError::Config(format!(
                "synthetic:{n_tokens_target} asks for more than the {MAX_SYNTHETIC_TOKENS} tokens the synthetic corpus makes; ask for fewer, or train on real data"
            )));
        }
        let mut ids = Vec::new();
        ids.try_reserve_exact(n_tokens_target).map_err(|_| {
            DataError::Config(format!(
                "there is not enough memory for synthetic:{n_tokens_target}; ask for fewer tokens"
            ))
        })?;
        for story in SyntheticStories::new(seed) {
            if ids.len() >= n_tokens_target {
                break;
            }
            tokenize_documents_of(&story, tokenizer, CHUNK_BYTES, &mut ids)?;
        }
        Ok(Tokens::new(ids))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.below(items.len())]
    }

    fn story(&mut self) -> String {
        let hero = self.pick(CHARACTERS);
        let friend = loop {
            let f = self.pick(CHARACTERS);
            if f.name != hero.name {
                break f;
            }
        };
        let trait_ = self.pick(TRAITS);
        let place = self.pick(PLACES);
        let color = self.pick(COLORS);
        let object = self.pick(OBJECTS);
        let spot = self.pick(SPOTS);
        let feeling = self.pick(FEELINGS);
        let fill = |template: &str| {
            template
                .replace("{n}", hero.name)
                .replace("{p}", hero.pronoun)
                .replace("{f}", friend.name)
                .replace("{o}", object)
                .replace("{l}", place)
                .replace("{e}", feeling)
        };

        let mut sentences = vec![
            format!(
                "Once upon a time, there was a {trait_} {} named {}.",
                hero.kind, hero.name
            ),
            format!(
                "One day, {} went to the {place} with {} friend {}.",
                hero.name, hero.possessive, friend.name
            ),
            format!("{} found a {color} {object} under {spot}.", hero.pronoun),
        ];
        let n_events = 1 + self.rng.below(3);
        for _ in 0..n_events {
            sentences.push(fill(self.pick(EVENTS)));
        }
        sentences.push(fill(self.pick(ENDINGS)));
        sentences.join(" ")
    }
}

impl Iterator for SyntheticStories {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        Some(self.story())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::TokenStream;
    use crate::tokenizer::ByteTokenizer;
    use std::collections::HashSet;

    #[test]
    fn same_seed_same_tokens_different_seed_different_tokens() {
        let a = SyntheticStories::generate(42, 5000, &ByteTokenizer).unwrap();
        let b = SyntheticStories::generate(42, 5000, &ByteTokenizer).unwrap();
        let c = SyntheticStories::generate(43, 5000, &ByteTokenizer).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn first_story_is_pinned() {
        // Pins the generator end to end, so a change to the grammar or the PRNG (which would
        // silently change every run's data) fails here first. The picks (hero 7, friend 3,
        // trait 0, place 5, color 0, object 1, spot 0, one event: 6, ending 1) were checked
        // against a separate Python SplitMix64.
        let first = SyntheticStories::new(0).next().unwrap_or_default();
        assert!(
            first.starts_with("Once upon a time, there was a "),
            "{first}"
        );
        assert_eq!(first, PINNED_SEED0_STORY);
    }

    const PINNED_SEED0_STORY: &str = "Once upon a time, there was a little boy named Sam. \
        One day, Sam went to the river with his friend Ben. He found a red kite under a tree. \
        The wind took the kite away, and Sam ran after it. \
        From that day on, Sam and Ben went to the river every day.";

    #[test]
    fn corpus_is_nontrivial_and_story_structured() {
        let tokens = SyntheticStories::generate(7, 20_000, &ByteTokenizer).unwrap();
        let ids = tokens.as_slice();
        assert!(ids.len() >= 20_000 && ids.len() < 21_000, "{}", ids.len());
        assert_eq!(ids[0], ByteTokenizer::BOS);
        let stories = ids.iter().filter(|&&id| id == ByteTokenizer::BOS).count();
        assert!(stories > 50, "{stories} stories");
        let distinct: HashSet<u32> = ids.iter().copied().collect();
        assert!(distinct.len() > 30, "{} distinct tokens", distinct.len());

        let text = ByteTokenizer
            .decode(&tokens.get(0..tokens.len()).unwrap())
            .unwrap();
        let distinct_names = CHARACTERS.iter().filter(|c| text.contains(c.name)).count();
        assert_eq!(distinct_names, CHARACTERS.len());
        let distinct_stories: HashSet<String> = SyntheticStories::new(7).take(50).collect();
        assert!(distinct_stories.len() > 45);
    }
}
