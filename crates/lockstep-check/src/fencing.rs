//! Fencing tokens: unique, and larger for a grant that started after
//! another one ended.

/// One successful acquire as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub client: u64,
    pub call: u64,
    pub ret: u64,
    pub token: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenViolation {
    /// Two grants carried the same token.
    Reused { token: u64, clients: (u64, u64) },
    /// `later` was called after `earlier` returned, with a token not larger.
    NotIncreasing { earlier: Grant, later: Grant },
}

/// All violations among `grants` (of one lock).
pub fn check_tokens(grants: &[Grant]) -> Vec<TokenViolation> {
    let mut violations = Vec::new();
    let mut by_token: Vec<&Grant> = grants.iter().collect();
    by_token.sort_by_key(|grant| grant.token);
    for pair in by_token.windows(2) {
        if pair[0].token == pair[1].token {
            violations.push(TokenViolation::Reused {
                token: pair[0].token,
                clients: (pair[0].client, pair[1].client),
            });
        }
    }
    // For each grant, the largest token among grants that returned before
    // it was called must be smaller than its own.
    let mut by_return: Vec<&Grant> = grants.iter().collect();
    by_return.sort_by_key(|grant| grant.ret);
    let mut best_before: Vec<&Grant> = Vec::with_capacity(by_return.len());
    for grant in &by_return {
        let best = match best_before.last() {
            Some(best) if best.token >= grant.token => best,
            _ => grant,
        };
        best_before.push(best);
    }
    for later in grants {
        let finished_before = by_return.partition_point(|grant| grant.ret < later.call);
        if finished_before == 0 {
            continue;
        }
        let earlier = best_before[finished_before - 1];
        if earlier.token >= later.token && earlier != later {
            violations.push(TokenViolation::NotIncreasing {
                earlier: earlier.clone(),
                later: later.clone(),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(client: u64, call: u64, ret: u64, token: u64) -> Grant {
        Grant {
            client,
            call,
            ret,
            token,
        }
    }

    #[test]
    fn increasing_and_concurrent_grants_pass() {
        let grants = [grant(1, 0, 10, 5), grant(2, 5, 20, 4), grant(3, 30, 40, 9)];
        assert!(check_tokens(&grants).is_empty());
    }

    #[test]
    fn reused_and_decreasing_tokens_are_found() {
        let reused = [grant(1, 0, 10, 5), grant(2, 20, 30, 5)];
        let found = check_tokens(&reused);
        assert!(found.contains(&TokenViolation::Reused {
            token: 5,
            clients: (1, 2)
        }));
        let decreasing = [grant(1, 0, 10, 7), grant(2, 20, 30, 6)];
        assert!(matches!(
            check_tokens(&decreasing).as_slice(),
            [TokenViolation::NotIncreasing { .. }]
        ));
    }
}
