//! Near-miss names: the known name a misspelt one most likely meant, for configuration errors
//! that say "did you mean …?" (variable names, route keys, HTTP methods).

/// Most edits (insertions, deletions, substitutions, adjacent transpositions) between a name and
/// the known one it is taken to mean.
pub const MAX_EDITS: usize = 2;

/// The optimal string alignment distance between `a` and `b` (Levenshtein plus adjacent
/// transpositions), by characters. Inputs are configuration names; longer than 64 characters on
/// either side yields `usize::MAX` (never a near miss), so the cost stays bounded.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        for j in 0..=b.len() {
            d[i * w + j] = if i == 0 {
                j
            } else if j == 0 {
                i
            } else {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                let mut v = (d[(i - 1) * w + j] + 1).min(d[i * w + j - 1] + 1).min(d[(i - 1) * w + j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    v = v.min(d[(i - 2) * w + j - 2] + 1);
                }
                v
            };
        }
    }
    d[a.len() * w + b.len()]
}

/// The known name `name` most likely meant: one equal to it ignoring ASCII case, else the
/// nearest within [`MAX_EDITS`] edits (and fewer edits than half its length, so that short names
/// do not match everything), the first listed on a tie. `None` when `name` is itself known or
/// nothing is near.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &'a str)> = None;
    for k in known {
        if k == name {
            return None;
        }
        let d = if k.eq_ignore_ascii_case(name) { 0 } else { edit_distance(name, k) };
        if d <= MAX_EDITS && d * 2 < k.chars().count() && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_found_and_far_names_are_not() {
        const KNOWN: [&str; 4] = ["ROUTES", "PAY_TO", "MODE", "price"];
        assert_eq!(closest("ROUTS", KNOWN), Some("ROUTES"));
        assert_eq!(closest("PAY_T0", KNOWN), Some("PAY_TO"));
        assert_eq!(closest("PYA_TO", KNOWN), Some("PAY_TO"), "a transposition is one edit");
        assert_eq!(closest("routes", KNOWN), Some("ROUTES"), "case only");
        assert_eq!(closest("pirce", KNOWN), Some("price"));
        assert_eq!(closest("ROUTES", KNOWN), None, "known");
        assert_eq!(closest("MY_APP_SETTING", KNOWN), None);
        assert_eq!(closest("ID", KNOWN), None, "short names need fewer edits than half their length");
        assert_eq!(edit_distance(&"x".repeat(65), "x"), usize::MAX);
    }
}
