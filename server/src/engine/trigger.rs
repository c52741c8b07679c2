//! Trigger rules, evaluated once every dependency of a task is terminal, so
//! the outcome never depends on timing. `FAILED` and
//! `SKIPPED(UPSTREAM_FAILED)` count as failed; `SKIPPED(RULE_NOT_MET)`
//! counts as skipped.

use tributary_core::TriggerRule;

use super::records::SkipReason;

/// How a terminal dependency ended, as trigger rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyOutcome {
    Succeeded,
    Failed,
    Skipped,
}

/// What becomes of a task whose dependencies are all terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerDecision {
    Run,
    Skip(SkipReason),
}

/// Evaluates `rule` over the outcomes of all dependencies. A task without
/// dependencies always runs, whatever its rule: there is nothing to wait for.
pub fn evaluate(rule: TriggerRule, outcomes: &[DependencyOutcome]) -> TriggerDecision {
    if outcomes.is_empty() {
        return TriggerDecision::Run;
    }
    let succeeded = outcomes
        .iter()
        .filter(|o| **o == DependencyOutcome::Succeeded)
        .count();
    let failed = outcomes
        .iter()
        .filter(|o| **o == DependencyOutcome::Failed)
        .count();
    let runs = match rule {
        TriggerRule::AllSuccess => succeeded == outcomes.len(),
        TriggerRule::AllDone => true,
        TriggerRule::OneSuccess => succeeded > 0,
        TriggerRule::OneFailed => failed > 0,
        TriggerRule::NoneFailed => failed == 0,
    };
    if runs {
        TriggerDecision::Run
    } else if failed > 0 {
        TriggerDecision::Skip(SkipReason::UpstreamFailed)
    } else {
        TriggerDecision::Skip(SkipReason::RuleNotMet)
    }
}

#[cfg(test)]
mod tests {
    use super::DependencyOutcome::{Failed, Skipped, Succeeded};
    use super::TriggerDecision::{Run, Skip};
    use super::*;
    use crate::engine::records::SkipReason::{RuleNotMet, UpstreamFailed};

    /// Every rule against every multiset of up to three outcomes, checked
    /// against the rule's definition written independently.
    #[test]
    fn exhaustive_over_small_outcome_sets() {
        let all = [Succeeded, Failed, Skipped];
        let mut cases: Vec<Vec<DependencyOutcome>> = vec![];
        for a in all {
            cases.push(vec![a]);
            for b in all {
                cases.push(vec![a, b]);
                for c in all {
                    cases.push(vec![a, b, c]);
                }
            }
        }
        for outcomes in &cases {
            let any_failed = outcomes.contains(&Failed);
            let any_succeeded = outcomes.contains(&Succeeded);
            let all_succeeded = outcomes.iter().all(|o| *o == Succeeded);
            let skip = if any_failed {
                Skip(UpstreamFailed)
            } else {
                Skip(RuleNotMet)
            };
            let expect = |runs: bool| if runs { Run } else { skip };
            assert_eq!(
                evaluate(TriggerRule::AllSuccess, outcomes),
                expect(all_succeeded),
                "{outcomes:?}"
            );
            assert_eq!(
                evaluate(TriggerRule::AllDone, outcomes),
                Run,
                "{outcomes:?}"
            );
            assert_eq!(
                evaluate(TriggerRule::OneSuccess, outcomes),
                expect(any_succeeded),
                "{outcomes:?}"
            );
            assert_eq!(
                evaluate(TriggerRule::OneFailed, outcomes),
                expect(any_failed),
                "{outcomes:?}"
            );
            assert_eq!(
                evaluate(TriggerRule::NoneFailed, outcomes),
                expect(!any_failed),
                "{outcomes:?}"
            );
        }
    }

    #[test]
    fn named_examples() {
        assert_eq!(
            evaluate(TriggerRule::AllSuccess, &[Succeeded, Skipped]),
            Skip(RuleNotMet)
        );
        assert_eq!(
            evaluate(TriggerRule::AllSuccess, &[Succeeded, Failed]),
            Skip(UpstreamFailed)
        );
        assert_eq!(
            evaluate(TriggerRule::NoneFailed, &[Succeeded, Skipped]),
            Run
        );
        assert_eq!(
            evaluate(TriggerRule::OneFailed, &[Succeeded, Succeeded]),
            Skip(RuleNotMet)
        );
        assert_eq!(
            evaluate(TriggerRule::OneSuccess, &[Failed, Failed]),
            Skip(UpstreamFailed)
        );
    }

    #[test]
    fn roots_always_run() {
        for rule in TriggerRule::ALL {
            assert_eq!(evaluate(rule, &[]), Run);
        }
    }
}
