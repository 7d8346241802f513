//! Limits on stdio processes: in total and per person, per upstream. A permit is held for the
//! life of the process and returned when it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why no process may start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitReached {
    #[error("this server already runs {0} processes (max_processes); try again when a session ends")]
    Total(usize),
    #[error("you already have {0} sessions with this server (max_processes_per_person); close one first")]
    PerPerson(usize),
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_person: HashMap<String, usize>,
}

/// The process counts of one upstream.
#[derive(Clone)]
pub struct Processes {
    counts: Arc<Mutex<Counts>>,
    max_total: usize,
    max_per_person: usize,
}

/// One running process's place in the counts.
pub struct Permit {
    counts: Arc<Mutex<Counts>>,
    person: String,
}

impl Processes {
    pub fn new(max_total: usize, max_per_person: usize) -> Self {
        Self { counts: Arc::default(), max_total, max_per_person }
    }

    pub fn acquire(&self, person: &str) -> Result<Permit, LimitReached> {
        let mut c = self.counts.lock().map_err(|_| LimitReached::Total(self.max_total))?;
        if c.total >= self.max_total {
            return Err(LimitReached::Total(self.max_total));
        }
        let mine = c.by_person.get(person).copied().unwrap_or(0);
        if mine >= self.max_per_person {
            return Err(LimitReached::PerPerson(self.max_per_person));
        }
        c.total += 1;
        c.by_person.insert(person.to_owned(), mine + 1);
        Ok(Permit { counts: self.counts.clone(), person: person.to_owned() })
    }

    /// Processes alive now.
    pub fn running(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut c) = self.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.by_person.get_mut(&self.person) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.by_person.remove(&self.person);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_person_and_in_total_and_permits_return() {
        let p = Processes::new(3, 2);
        let a1 = p.acquire("alice").unwrap();
        let _a2 = p.acquire("alice").unwrap();
        assert_eq!(p.acquire("alice").err(), Some(LimitReached::PerPerson(2)));
        let _b1 = p.acquire("bob").unwrap();
        assert_eq!(p.acquire("carol").err(), Some(LimitReached::Total(3)));
        drop(a1);
        assert_eq!(p.running(), 2);
        assert!(p.acquire("carol").is_ok());
    }
}
