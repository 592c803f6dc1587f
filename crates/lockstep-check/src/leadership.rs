//! Leaderships of one election as their clients lived them: no two may
//! overlap in real time (beyond a stated bound), and a write fenced with a
//! leadership's token may not be accepted once a newer leadership began.

/// One leadership: its token, from the moment the campaign returned to the
/// moment its client stopped acting as leader (it resigned, learned it was
/// deposed, or could no longer be sure its lease lived).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub client: u64,
    pub token: u64,
    pub start: u64,
    pub end: u64,
}

/// A write fenced with a leadership's token that the service accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FencedWrite {
    pub client: u64,
    pub token: u64,
    pub call: u64,
    pub ret: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeadershipViolation {
    /// `later` began while `earlier` still acted, by more than the bound.
    Overlap {
        earlier: Leadership,
        later: Leadership,
        by: u64,
    },
    /// `write` was sent after `newer` had begun, and was still accepted.
    StaleWriteAccepted {
        write: FencedWrite,
        newer: Leadership,
    },
}

/// Overlaps longer than `bound` (same unit as the times) among
/// `leaderships`, each with the leadership that ended last before it.
pub fn check_overlaps(leaderships: &[Leadership], bound: u64) -> Vec<LeadershipViolation> {
    let mut by_start: Vec<&Leadership> = leaderships.iter().collect();
    by_start.sort_by_key(|l| (l.start, l.token));
    let mut violations = Vec::new();
    let mut latest_end: Option<&Leadership> = None;
    for later in by_start {
        if let Some(earlier) = latest_end {
            if earlier.end > later.start.saturating_add(bound) {
                violations.push(LeadershipViolation::Overlap {
                    earlier: earlier.clone(),
                    later: later.clone(),
                    by: earlier.end - later.start,
                });
            }
        }
        if latest_end.is_none_or(|e| later.end > e.end) {
            latest_end = Some(later);
        }
    }
    violations
}

/// Accepted writes whose token had already been superseded when they were
/// sent: a leadership with a larger token had begun before the call.
pub fn check_fenced_writes(
    leaderships: &[Leadership],
    writes: &[FencedWrite],
) -> Vec<LeadershipViolation> {
    let mut by_start: Vec<&Leadership> = leaderships.iter().collect();
    by_start.sort_by_key(|l| l.start);
    // newest[i]: the leadership with the largest token among the first i+1.
    let mut newest: Vec<&Leadership> = Vec::with_capacity(by_start.len());
    for l in &by_start {
        let best = match newest.last() {
            Some(best) if best.token >= l.token => best,
            _ => l,
        };
        newest.push(best);
    }
    let mut violations = Vec::new();
    for write in writes {
        let begun = by_start.partition_point(|l| l.start < write.call);
        if begun == 0 {
            continue;
        }
        let newer = newest[begun - 1];
        if newer.token > write.token {
            violations.push(LeadershipViolation::StaleWriteAccepted {
                write: write.clone(),
                newer: newer.clone(),
            });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(client: u64, token: u64, start: u64, end: u64) -> Leadership {
        Leadership {
            client,
            token,
            start,
            end,
        }
    }

    fn write(client: u64, token: u64, call: u64) -> FencedWrite {
        FencedWrite {
            client,
            token,
            call,
            ret: call + 1,
        }
    }

    #[test]
    fn successive_leaderships_pass_and_overlaps_are_found() {
        let fine = [lead(1, 5, 0, 10), lead(2, 9, 10, 20), lead(3, 12, 25, 30)];
        assert!(check_overlaps(&fine, 0).is_empty());
        // A long leadership hides behind a short one that started later.
        let hidden = [lead(1, 5, 0, 50), lead(2, 9, 10, 20), lead(3, 12, 30, 40)];
        let found = check_overlaps(&hidden, 0);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(matches!(
            &found[1],
            LeadershipViolation::Overlap { earlier, by: 20, .. } if earlier.client == 1
        ));
        // Within the bound: allowed.
        assert!(check_overlaps(&[lead(1, 5, 0, 12), lead(2, 9, 10, 20)], 2).is_empty());
        assert_eq!(
            check_overlaps(&[lead(1, 5, 0, 13), lead(2, 9, 10, 20)], 2).len(),
            1
        );
    }

    #[test]
    fn a_write_sent_after_a_newer_leadership_began_is_stale() {
        let leaderships = [lead(1, 5, 0, 10), lead(2, 9, 10, 20)];
        assert!(check_fenced_writes(&leaderships, &[write(1, 5, 3), write(2, 9, 15)]).is_empty());
        // Sent before the newer one began: it may have been accepted.
        assert!(check_fenced_writes(&leaderships, &[write(1, 5, 9)]).is_empty());
        let found = check_fenced_writes(&leaderships, &[write(1, 5, 11)]);
        assert!(matches!(
            found.as_slice(),
            [LeadershipViolation::StaleWriteAccepted { newer, .. }] if newer.token == 9
        ));
    }
}
