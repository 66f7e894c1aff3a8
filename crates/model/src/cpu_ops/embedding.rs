//! Token embedding lookup into `[D][S]` and its backward (scatter-add into the table).
//! Tokens must already be checked against the vocabulary. Cost `O(D·S)`.

/// `x[c][t] = table[tokens[t]][c]` for a table `[V][D]`.
pub fn lookup(x: &mut [f32], table: &[f32], tokens: &[u32]) {
    let s = tokens.len();
    let d = x.len() / s.max(1);
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &table[tok as usize * d..][..d];
        for (c, &v) in row.iter().enumerate() {
            x[c * s + t] = v;
        }
    }
}

/// `dtable[tokens[t]][c] += dx[c][t]`; repeated tokens accumulate in position order.
pub fn scatter_add(dtable: &mut [f32], dx: &[f32], tokens: &[u32]) {
    let s = tokens.len();
    let d = dx.len() / s.max(1);
    for (t, &tok) in tokens.iter().enumerate() {
        let row = &mut dtable[tok as usize * d..][..d];
        for (c, v) in row.iter_mut().enumerate() {
            *v += dx[c * s + t];
        }
    }
}
