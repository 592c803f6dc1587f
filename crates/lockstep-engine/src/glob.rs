//! Redis glob-style pattern matching (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes),
//! as KEYS and SCAN MATCH use it.

pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match_from(pattern, text, 0)
}

/// Nesting of `*` bounds the backtracking Redis also allows.
const MAX_STAR_DEPTH: usize = 1000;

fn match_from(mut pattern: &[u8], mut text: &[u8], depth: usize) -> bool {
    if depth > MAX_STAR_DEPTH {
        return false;
    }
    while let Some(&p) = pattern.first() {
        match p {
            b'*' => {
                while pattern.len() > 1 && pattern[1] == b'*' {
                    pattern = &pattern[1..];
                }
                if pattern.len() == 1 {
                    return true;
                }
                for start in 0..=text.len() {
                    if match_from(&pattern[1..], &text[start..], depth + 1) {
                        return true;
                    }
                }
                return false;
            }
            b'?' => {
                if text.is_empty() {
                    return false;
                }
                text = &text[1..];
                pattern = &pattern[1..];
            }
            b'[' => {
                let Some(&c) = text.first() else {
                    return false;
                };
                let (matched, rest) = match_class(&pattern[1..], c);
                if !matched {
                    return false;
                }
                pattern = rest;
                text = &text[1..];
            }
            _ => {
                let literal = if p == b'\\' && pattern.len() >= 2 {
                    pattern = &pattern[1..];
                    pattern[0]
                } else {
                    p
                };
                if text.first() != Some(&literal) {
                    return false;
                }
                text = &text[1..];
                pattern = &pattern[1..];
            }
        }
    }
    text.is_empty()
}

/// Matches `c` against a class whose body starts at `pattern` (after `[`);
/// returns whether it matched and the pattern after the closing `]`.
fn match_class(mut pattern: &[u8], c: u8) -> (bool, &[u8]) {
    let negate = pattern.first() == Some(&b'^');
    if negate {
        pattern = &pattern[1..];
    }
    let mut matched = false;
    loop {
        match pattern {
            [] => break,
            [b']', rest @ ..] => {
                pattern = rest;
                break;
            }
            [b'\\', escaped, rest @ ..] => {
                matched |= *escaped == c;
                pattern = rest;
            }
            [low, b'-', high, rest @ ..] if *high != b']' => {
                let (low, high) = if low <= high {
                    (*low, *high)
                } else {
                    (*high, *low)
                };
                matched |= (low..=high).contains(&c);
                pattern = rest;
            }
            [single, rest @ ..] => {
                matched |= *single == c;
                pattern = rest;
            }
        }
    }
    (matched != negate, pattern)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_like_redis() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "anything", true),
            ("*", "", true),
            ("lock:*", "lock:a", true),
            ("lock:*", "lck:a", false),
            ("h?llo", "hello", true),
            ("h?llo", "hllo", false),
            ("h[ae]llo", "hallo", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h\\*llo", "h*llo", true),
            ("h\\*llo", "hello", false),
            ("*a*b*c", "xxaybzc", true),
            ("*a*b*c", "xxaybz", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                *expected,
                "{pattern} ~ {text}"
            );
        }
    }
}
