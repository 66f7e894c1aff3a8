//! "Did you mean" suggestions for misspelled op, argument, attribute and type names.

/// The candidate closest to `word` by edit distance (a swap of two neighbouring letters counts
/// as one edit), if it is close enough to be a plausible typo: at most one edit per three
/// characters, and at least one edit allowed.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `"; did you mean `x`?"` when a close candidate exists, else `otherwise`.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str], otherwise: &str) -> String {
    match closest(word, candidates) {
        Some(c) => format!("; did you mean `{c}`?"),
        None => otherwise.to_string(),
    }
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent swaps.
/// O(|a|·|b|) time; the inputs are identifiers of a few dozen characters at most.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // d[i * width + j] = distance between a[..i] and b[..j].
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_match_hand_counts() {
        assert_eq!(edit_distance("matmull", "matmul"), 1);
        assert_eq!(edit_distance("fp61", "fp16"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn suggests_only_plausible_typos() {
        let ops = ["matmul", "mul", "conv"];
        assert_eq!(closest("matmull", &ops), Some("matmul"));
        assert_eq!(closest("mull", &ops), Some("mul"));
        assert_eq!(closest("softmax", &ops), None);
        assert_eq!(did_you_mean("cnov", &ops, "!"), "; did you mean `conv`?");
        assert_eq!(did_you_mean("xyz", &ops, "!"), "!");
    }
}
