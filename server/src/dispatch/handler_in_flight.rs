//! Attempts in flight per handler across every executor of a namespace, for
//! tasks that limit them (`max_in_flight`).
//!
//! An attempt counts from its assignment until its executor reports its end
//! or leaves: the time it really occupies whatever the handler calls. A
//! timed-out or cancelled attempt still counts until its executor says it
//! stopped. After a restart, an attempt the database says was in flight
//! counts from recovery until it is reclaimed and ends, or its reclaim
//! window closes. Every attempt is counted, with a limit or without, since a
//! limit holds for all the attempts of the handler.

use std::collections::HashMap;

use super::ready_queue::{HandlerKey, ReadyKey};

#[derive(Debug, Default)]
pub struct HandlerInFlight {
    handler_of: HashMap<String, HandlerKey>,
    counts: HashMap<HandlerKey, usize>,
}

impl HandlerInFlight {
    /// Counts `attempt_id` for `handler`; counting it again changes nothing.
    pub fn started(&mut self, attempt_id: &str, handler: &HandlerKey) {
        if self.handler_of.contains_key(attempt_id) {
            return;
        }
        self.handler_of
            .insert(attempt_id.to_owned(), handler.clone());
        *self.counts.entry(handler.clone()).or_default() += 1;
    }

    /// Stops counting `attempt_id`; an attempt not counted changes nothing.
    pub fn ended(&mut self, attempt_id: &str) {
        let Some(handler) = self.handler_of.remove(attempt_id) else {
            return;
        };
        if let Some(count) = self.counts.get_mut(&handler) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&handler);
            }
        }
    }

    /// Attempts of `handler` in flight.
    pub fn count(&self, handler: &HandlerKey) -> usize {
        self.counts.get(handler).copied().unwrap_or(0)
    }

    /// Whether a task waiting at `key` must wait for one of its handler's
    /// attempts to end.
    pub fn at_limit(&self, key: &ReadyKey) -> bool {
        key.max_in_flight
            .is_some_and(|limit| self.count(&key.handler) >= limit as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler(name: &str) -> HandlerKey {
        HandlerKey {
            namespace: "default".into(),
            handler: name.into(),
        }
    }

    fn limited(name: &str, limit: Option<u32>) -> ReadyKey {
        ReadyKey {
            handler: handler(name),
            labels: None,
            max_in_flight: limit,
        }
    }

    #[test]
    fn attempts_count_once_until_they_end() {
        let mut in_flight = HandlerInFlight::default();
        in_flight.started("a1", &handler("h"));
        in_flight.started("a1", &handler("h"));
        in_flight.started("a2", &handler("h"));
        in_flight.started("b1", &handler("other"));
        assert_eq!(in_flight.count(&handler("h")), 2);
        in_flight.ended("a1");
        in_flight.ended("a1");
        in_flight.ended("never-started");
        assert_eq!(in_flight.count(&handler("h")), 1);
        assert_eq!(in_flight.count(&handler("other")), 1);
        in_flight.ended("a2");
        assert_eq!(in_flight.count(&handler("h")), 0);
        assert!(!in_flight.counts.contains_key(&handler("h")));
    }

    #[test]
    fn a_limit_counts_every_attempt_of_its_handler_in_its_namespace() {
        let mut in_flight = HandlerInFlight::default();
        let two = limited("h", Some(2));
        assert!(!in_flight.at_limit(&two));
        in_flight.started("a1", &handler("h"));
        in_flight.started("x1", &handler("other"));
        let elsewhere = HandlerKey {
            namespace: "finance".into(),
            handler: "h".into(),
        };
        in_flight.started("f1", &elsewhere);
        assert!(!in_flight.at_limit(&two));
        // An attempt of a task without a limit counts against one with.
        in_flight.started("a2", &handler("h"));
        assert!(in_flight.at_limit(&two));
        assert!(!in_flight.at_limit(&limited("h", None)));
        assert!(!in_flight.at_limit(&limited("h", Some(3))));
        in_flight.ended("a1");
        assert!(!in_flight.at_limit(&two));
    }
}
