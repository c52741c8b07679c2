use std::collections::{HashMap, HashSet};

use tributary_core::ConcurrencyStrategy::{self, CancelInProgress, CancelNewest, Queue};

use super::*;

fn scope(key: &str) -> KeyScope {
    KeyScope {
        namespace: "default".into(),
        workflow_name: "w".into(),
        key: key.into(),
    }
}

fn policy(max_active_runs: u32, strategy: ConcurrencyStrategy) -> RunPolicy {
    RunPolicy {
        max_active_runs,
        strategy,
    }
}

#[test]
fn queue_starts_up_to_the_limit_then_queues_in_fifo_order() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("acme");
    assert_eq!(keys.admit(&k, "r1", policy(2, Queue)), Admission::Start);
    assert_eq!(keys.admit(&k, "r2", policy(2, Queue)), Admission::Start);
    assert_eq!(
        keys.admit(&k, "r3", policy(2, Queue)),
        Admission::Queue { position: 1 }
    );
    assert_eq!(
        keys.admit(&k, "r4", policy(2, Queue)),
        Admission::Queue { position: 2 }
    );
    assert_eq!(keys.position(&k, "r4"), Some(2));
    assert_eq!(keys.position(&k, "r1"), None);
    // The run that ends need not be the oldest; the head of the queue starts.
    assert_eq!(keys.finish(&k, "r2"), ["r3"]);
    assert_eq!(keys.active(&k), ["r1", "r3"]);
    assert_eq!(keys.position(&k, "r4"), Some(1));
    assert_eq!(keys.finish(&k, "r1"), ["r4"]);
    assert!(keys.finish(&k, "r3").is_empty());
    assert!(keys.finish(&k, "r4").is_empty());
    assert_eq!(keys.key_count(), 0, "an idle key holds no memory");
}

#[test]
fn runs_are_found_by_id_while_active_or_queued() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    keys.admit(&k, "r1", policy(1, Queue));
    keys.admit(&k, "r2", policy(1, Queue));
    assert_eq!(keys.scope_of("r1"), Some(&k));
    assert!(!keys.is_queued("r1"));
    assert!(keys.is_queued("r2"));
    keys.admit(&k, "r3", policy(1, CancelNewest));
    assert_eq!(keys.scope_of("r3"), None, "a cancelled new run is nowhere");
    assert_eq!(keys.finish(&k, "r1"), ["r2"]);
    assert_eq!(keys.scope_of("r1"), None);
    assert!(!keys.is_queued("r2"));
    keys.admit(&k, "r4", policy(1, CancelInProgress));
    assert_eq!(keys.scope_of("r2"), None, "cancelled to make room");
    assert_eq!(keys.scope_of("r4"), Some(&k));
    keys.restore(&scope("j"), vec!["r5".into()], vec![("r6".into(), 1)]);
    assert!(keys.is_queued("r6"));
    assert_eq!(keys.scope_of("r5"), Some(&scope("j")));
}

#[test]
fn room_is_what_a_new_run_would_find() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    assert!(keys.has_room(&k, 1));
    keys.admit(&k, "r1", policy(2, Queue));
    assert!(keys.has_room(&k, 2) && !keys.has_room(&k, 1));
    keys.admit(&k, "r2", policy(2, Queue));
    keys.admit(&k, "r3", policy(2, Queue));
    keys.finish(&k, "r1");
    // r3 took the slot: full again.
    assert!(!keys.has_room(&k, 2));
    assert!(
        keys.has_room(&k, 3),
        "a higher limit has room and nothing waits"
    );
}

#[test]
fn keys_do_not_share_slots() {
    let mut keys = ConcurrencyKeys::new();
    assert_eq!(
        keys.admit(&scope("a"), "r1", policy(1, Queue)),
        Admission::Start
    );
    assert_eq!(
        keys.admit(&scope("b"), "r2", policy(1, Queue)),
        Admission::Start
    );
    assert_eq!(
        keys.admit(&scope("a"), "r3", policy(1, Queue)),
        Admission::Queue { position: 1 }
    );
    // The same key in another workflow or namespace is another scope.
    let other_workflow = KeyScope {
        workflow_name: "v".into(),
        ..scope("a")
    };
    let other_namespace = KeyScope {
        namespace: "team".into(),
        ..scope("a")
    };
    assert_eq!(
        keys.admit(&other_workflow, "r4", policy(1, Queue)),
        Admission::Start
    );
    assert_eq!(
        keys.admit(&other_namespace, "r5", policy(1, Queue)),
        Admission::Start
    );
    assert!(
        keys.finish(&scope("b"), "r2").is_empty(),
        "b's slot is b's only"
    );
    assert_eq!(keys.finish(&scope("a"), "r1"), ["r3"]);
}

#[test]
fn cancelling_a_queued_run_shifts_the_ones_behind_it_and_starts_nothing() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    keys.admit(&k, "r1", policy(1, Queue));
    keys.admit(&k, "r2", policy(1, Queue));
    keys.admit(&k, "r3", policy(1, Queue));
    assert!(keys.finish(&k, "r2").is_empty());
    assert_eq!(keys.queued(&k), ["r3"]);
    assert_eq!(keys.position(&k, "r3"), Some(1));
    assert!(keys.finish(&k, "unknown").is_empty());
    assert!(keys.finish(&scope("nowhere"), "r1").is_empty());
    assert_eq!(keys.finish(&k, "r1"), ["r3"]);
}

#[test]
fn a_new_run_never_overtakes_queued_ones() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    keys.admit(&k, "r1", policy(1, Queue));
    keys.admit(&k, "r2", policy(1, Queue));
    // A later version raises the limit: its run would fit, but r2 is waiting.
    assert_eq!(
        keys.admit(&k, "r3", policy(5, Queue)),
        Admission::Queue { position: 2 }
    );
    assert_eq!(
        keys.admit(&k, "r4", policy(5, CancelNewest)),
        Admission::Cancel {
            reason: "concurrency limit of 5 active runs for key \"k\" reached".into()
        }
    );
    // When r1 ends, r2 (limit 1) starts, then r3 (limit 5) fits too.
    assert_eq!(keys.finish(&k, "r1"), ["r2", "r3"]);
}

#[test]
fn the_head_waits_for_its_own_limit() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    keys.admit(&k, "r1", policy(3, Queue));
    keys.admit(&k, "r2", policy(3, Queue));
    keys.admit(&k, "r3", policy(3, Queue));
    // A version lowered the limit to 1: its run waits until one is active.
    assert_eq!(
        keys.admit(&k, "r4", policy(1, Queue)),
        Admission::Queue { position: 1 }
    );
    assert!(keys.finish(&k, "r1").is_empty());
    assert!(keys.finish(&k, "r2").is_empty());
    assert_eq!(keys.finish(&k, "r3"), ["r4"]);
}

#[test]
fn cancel_newest_cancels_the_new_run_and_leaves_the_key_unchanged() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    assert_eq!(
        keys.admit(&k, "r1", policy(1, CancelNewest)),
        Admission::Start
    );
    assert_eq!(
        keys.admit(&k, "r2", policy(1, CancelNewest)),
        Admission::Cancel {
            reason: "concurrency limit of 1 active runs for key \"k\" reached".into()
        }
    );
    assert_eq!(keys.active(&k), ["r1"]);
    assert!(keys.queued(&k).is_empty());
    assert!(
        keys.finish(&k, "r2").is_empty(),
        "a cancelled new run is nowhere"
    );
    assert!(keys.finish(&k, "r1").is_empty());
    assert_eq!(
        keys.admit(&k, "r3", policy(1, CancelNewest)),
        Admission::Start
    );
}

#[test]
fn cancel_in_progress_cancels_the_oldest_active_runs() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    assert_eq!(
        keys.admit(&k, "r1", policy(2, CancelInProgress)),
        Admission::Start
    );
    assert_eq!(
        keys.admit(&k, "r2", policy(2, CancelInProgress)),
        Admission::Start
    );
    assert_eq!(
        keys.admit(&k, "r3", policy(2, CancelInProgress)),
        Admission::StartCancelling {
            cancelled: vec!["r1".into()],
            reason: "cancelled by newer run r3 (concurrency key \"k\")".into()
        }
    );
    assert_eq!(keys.active(&k), ["r2", "r3"]);
    // A version with a lower limit cancels as many as it takes.
    assert_eq!(
        keys.admit(&k, "r4", policy(1, CancelInProgress)),
        Admission::StartCancelling {
            cancelled: vec!["r2".into(), "r3".into()],
            reason: "cancelled by newer run r4 (concurrency key \"k\")".into()
        }
    );
    assert_eq!(keys.active(&k), ["r4"]);
    // The caller does not finish the cancelled runs; if it did, nothing
    // would change.
    assert!(keys.finish(&k, "r1").is_empty());
    assert_eq!(keys.active(&k), ["r4"]);
}

#[test]
fn restore_rebuilds_the_order_and_starts_what_fits() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("k");
    assert!(
        keys.restore(
            &k,
            vec!["r1".into()],
            vec![("r2".into(), 1), ("r3".into(), 1)]
        )
        .is_empty()
    );
    assert_eq!(keys.position(&k, "r3"), Some(2));
    assert_eq!(keys.finish(&k, "r1"), ["r2"]);
    // Queued runs whose slots freed while the server was down start at once.
    let mut keys = ConcurrencyKeys::new();
    assert_eq!(
        keys.restore(
            &k,
            vec![],
            vec![("r2".into(), 2), ("r3".into(), 2), ("r4".into(), 2)]
        ),
        ["r2", "r3"]
    );
    assert_eq!(keys.queued(&k), ["r4"]);
    let mut keys = ConcurrencyKeys::new();
    assert!(keys.restore(&k, vec![], vec![]).is_empty());
    assert_eq!(keys.key_count(), 0);
}

/// Random sequences of starts, ends and cancellations over a few keys, with
/// each step's policy drawn at random, checked against the invariants: a
/// run is in at most one place; a key with queued runs has its head's limit
/// reached; no key exceeds the limit its runs were admitted by, except when
/// a later version lowered it; positions are 1..n; queues are FIFO.
#[test]
fn random_sequences_keep_the_invariants() {
    let strategies = [Queue, CancelNewest, CancelInProgress];
    for seed in 0..300 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut keys = ConcurrencyKeys::new();
        let mut live: Vec<(KeyScope, String)> = Vec::new();
        let mut ended: HashSet<String> = HashSet::new();
        let mut queued_order: HashMap<KeyScope, Vec<String>> = HashMap::new();
        let limit = rng.u32(1..4);
        let strategy = strategies[rng.usize(..strategies.len())];
        for step in 0..200 {
            if live.is_empty() || rng.u8(..3) > 0 {
                let k = scope(&format!("k{}", rng.u8(..3)));
                let run_id = format!("r{step}");
                match keys.admit(&k, &run_id, policy(limit, strategy)) {
                    Admission::Start => {
                        assert!(keys.queued(&k).is_empty() || strategy == CancelInProgress);
                        live.push((k, run_id));
                    }
                    Admission::StartCancelling { cancelled, .. } => {
                        assert_eq!(strategy, CancelInProgress);
                        for id in cancelled {
                            assert!(ended.insert(id.clone()));
                            live.retain(|(_, live_id)| *live_id != id);
                        }
                        live.push((k, run_id));
                    }
                    Admission::Queue { position } => {
                        assert_eq!(strategy, Queue);
                        let order = queued_order.entry(k.clone()).or_default();
                        order.push(run_id.clone());
                        assert_eq!(position, keys.queued(&k).len());
                        live.push((k, run_id));
                    }
                    Admission::Cancel { .. } => {
                        assert_eq!(strategy, CancelNewest);
                        assert!(keys.active(&k).len() >= limit as usize);
                        ended.insert(run_id);
                    }
                }
            } else {
                let (k, run_id) = live.remove(rng.usize(..live.len()));
                ended.insert(run_id.clone());
                if let Some(order) = queued_order.get_mut(&k) {
                    order.retain(|id| *id != run_id);
                }
                for started in keys.finish(&k, &run_id) {
                    let order = queued_order.get_mut(&k).expect("queued before");
                    assert_eq!(order.remove(0), started, "FIFO");
                }
            }
            for id in &ended {
                assert_eq!(keys.scope_of(id), None, "an ended run is forgotten");
            }
            for key in 0..3 {
                let k = scope(&format!("k{key}"));
                let active = keys.active(&k);
                let queued = keys.queued(&k);
                assert!(active.len() <= limit as usize, "seed {seed} step {step}");
                if !queued.is_empty() {
                    assert_eq!(active.len(), limit as usize, "a queue only when full");
                }
                let expected: Vec<&str> = queued_order
                    .get(&k)
                    .map(|order| order.iter().map(String::as_str).collect())
                    .unwrap_or_default();
                assert_eq!(queued, expected);
                for (index, id) in queued.iter().enumerate() {
                    assert_eq!(keys.position(&k, id), Some(index + 1));
                    assert!(!active.iter().any(|active_id| active_id == id));
                }
                for id in active {
                    assert!(!ended.contains(id), "an ended run is not active");
                    assert_eq!(keys.scope_of(id), Some(&k));
                }
                for id in &queued {
                    assert_eq!(keys.scope_of(id), Some(&k));
                }
            }
        }
    }
}

#[test]
fn a_withdrawn_admission_leaves_the_runs_it_was_to_cancel_in_place() {
    let mut keys = ConcurrencyKeys::new();
    let k = scope("acme");
    keys.admit(&k, "r1", policy(2, CancelInProgress));
    keys.admit(&k, "r2", policy(2, CancelInProgress));
    let admission = keys.admit(&k, "r3", policy(2, CancelInProgress));
    let Admission::StartCancelling { cancelled, .. } = admission else {
        panic!("r3 cancels the oldest run: {admission:?}");
    };
    assert_eq!(cancelled, ["r1"]);
    // r3 was never stored: r1 keeps running and keeps its place.
    assert!(keys.withdraw(&k, "r3", &cancelled).is_empty());
    assert_eq!(keys.active(&k), ["r1", "r2"]);
    assert_eq!(keys.scope_of("r1"), Some(&k));
    assert_eq!(keys.scope_of("r3"), None);
    assert!(matches!(
        keys.admit(&k, "r4", policy(2, CancelInProgress)),
        Admission::StartCancelling { cancelled, .. } if cancelled == ["r1"]
    ));
    // Withdrawing a queued or started run is finishing it.
    let q = scope("queue");
    keys.admit(&q, "q1", policy(1, Queue));
    keys.admit(&q, "q2", policy(1, Queue));
    assert!(keys.withdraw(&q, "q2", &[]).is_empty());
    assert_eq!(keys.withdraw(&q, "q1", &[]), Vec::<String>::new());
    assert_eq!(keys.active(&q), Vec::<String>::new());
}
