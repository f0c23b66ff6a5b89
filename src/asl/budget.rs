//! The evaluation budget: the one meter that every unit of evaluation work draws on.
//!
//! Each traversal, comparison, copy, serialisation and descent in JSONata, JSONPath, the
//! intrinsic functions and Choice rules calls [`charge`] with the work it is about to do. A
//! budget is installed for the length of a closure by [`run`]; budgets nest (the engine puts
//! one around a whole step, JSONata one around each expression), and a charge counts against
//! every budget in force, so the tightest one decides. Outside any budget a charge is free.
//!
//! A budget has a step limit and, optionally, a wall-clock limit. The clock is read at most
//! once every [`CLOCK_EVERY`] units, at the same points as the step check, so it also catches
//! whatever the counters miss (a slow regular expression, say, still charges its input).
//!
//! Once a budget is exhausted it stays exhausted: every later charge under it fails at once,
//! so the work unwinds quickly, and [`run`] reports which limit was passed and at which state
//! (the label given to [`label`]). The engine fails the execution with that cause whatever
//! the evaluation did with the error it saw on the way.
//!
//! This module reads the monotonic clock only for a wall-clock budget; with none installed
//! (validation, projections, tests) evaluation stays deterministic.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

/// How often (in charged units) the clock is read under a wall-clock budget.
pub const CLOCK_EVERY: u64 = 4096;

/// Which limit an evaluation passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Exhausted {
    /// More evaluation steps than the budget allows.
    #[error("the evaluation budget of {limit} steps")]
    Steps { limit: u64 },
    /// More wall-clock time than the budget allows.
    #[error("the wall-clock budget of {} ms", .limit.as_millis())]
    Time { limit: Duration },
}

/// The limits of one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Units of work (evaluation steps, nodes visited, bytes copied or compared).
    pub steps: u64,
    /// Time from the moment the budget is installed.
    pub wall: Option<Duration>,
}

impl Limits {
    /// A step limit only.
    pub fn steps(steps: u64) -> Limits {
        Limits { steps, wall: None }
    }
}

/// What a closure run under a budget spent, and the limit it passed, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spent {
    pub steps: u64,
    /// The limit passed, and the label in force when it was (a state's name).
    pub exhausted: Option<(Exhausted, Option<String>)>,
}

struct Level {
    /// `USED` at which this budget is spent.
    end: u64,
    start: u64,
    limits: Limits,
    deadline: Option<Instant>,
    tripped: Option<(Exhausted, Option<String>)>,
}

thread_local! {
    /// Units charged on this thread since it started (only ever grows).
    static USED: Cell<u64> = const { Cell::new(0) };
    /// The smallest `end` of the budgets in force (`u64::MAX` when none).
    static END: Cell<u64> = const { Cell::new(u64::MAX) };
    /// `USED` at which the clock is read next (`u64::MAX` when no budget has a deadline).
    static NEXT_CLOCK: Cell<u64> = const { Cell::new(u64::MAX) };
    static LEVELS: RefCell<Vec<Level>> = const { RefCell::new(Vec::new()) };
    static LABEL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Charge `units` of work to every budget in force. `Err` once any of them is spent (and for
/// every charge after that, until that budget's closure returns).
#[inline]
pub fn charge(units: u64) -> Result<(), Exhausted> {
    let used = USED.get().saturating_add(units);
    USED.set(used);
    if used > END.get() || used >= NEXT_CLOCK.get() { slow(used) } else { Ok(()) }
}

/// Charge a walk over (or a copy of) a JSON value: a unit a node and one per 16 bytes of text.
/// Stops walking as soon as a budget is spent, so a huge value costs no more than the budget.
pub fn charge_json(v: &serde_json::Value) -> Result<(), Exhausted> {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        let units = match v {
            serde_json::Value::String(s) => 1 + s.len() as u64 / 16,
            serde_json::Value::Array(a) => {
                stack.extend(a.iter());
                1
            }
            serde_json::Value::Object(o) => {
                stack.extend(o.values());
                1 + o.keys().map(|k| k.len() as u64 / 16).sum::<u64>()
            }
            _ => 1,
        };
        charge(units)?;
    }
    Ok(())
}

/// True when a budget in force is spent: work that cannot return an error stops early on this.
pub fn spent() -> bool {
    charge(0).is_err()
}

/// Name what is being evaluated (a state's name), for the cause when a budget runs out.
/// The label lasts until the enclosing [`run`] returns or the next call.
pub fn label(name: &str) {
    LABEL.with_borrow_mut(|l| match l {
        Some(s) if s == name => {}
        _ => *l = Some(name.to_string()),
    });
}

#[cold]
fn slow(used: u64) -> Result<(), Exhausted> {
    LEVELS.with_borrow_mut(|levels| {
        let clock_due = used >= NEXT_CLOCK.get();
        let now = if clock_due && levels.iter().any(|l| l.deadline.is_some()) { Some(Instant::now()) } else { None };
        let mut first: Option<Exhausted> = None;
        for level in levels.iter_mut().rev() {
            if let Some((e, _)) = &level.tripped {
                first.get_or_insert_with(|| e.clone());
                continue;
            }
            let passed = if used > level.end {
                Some(Exhausted::Steps { limit: level.limits.steps })
            } else {
                match (now, level.deadline, level.limits.wall) {
                    (Some(now), Some(d), Some(limit)) if now >= d => Some(Exhausted::Time { limit }),
                    _ => None,
                }
            };
            if let Some(e) = passed {
                let at = LABEL.with_borrow(|l| l.clone());
                level.tripped = Some((e.clone(), at));
                // Spent for good: every later charge under it fails without the clock.
                level.end = level.end.min(used.saturating_sub(1));
                first.get_or_insert(e);
            }
        }
        END.set(levels.iter().map(|l| l.end).min().unwrap_or(u64::MAX));
        if clock_due {
            let timed = levels.iter().any(|l| l.deadline.is_some() && l.tripped.is_none());
            NEXT_CLOCK.set(if timed { used.saturating_add(CLOCK_EVERY) } else { u64::MAX });
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}

/// Pops its level even when the closure unwinds, so a caught panic leaves no budget behind.
struct Guard {
    depth: usize,
    label: Option<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        LEVELS.with_borrow_mut(|levels| {
            levels.truncate(self.depth);
            END.set(levels.iter().map(|l| l.end).min().unwrap_or(u64::MAX));
            let timed = levels.iter().any(|l| l.deadline.is_some() && l.tripped.is_none());
            NEXT_CLOCK.set(if timed { USED.get().saturating_add(CLOCK_EVERY).min(NEXT_CLOCK.get()) } else { u64::MAX });
        });
        LABEL.with_borrow_mut(|l| *l = self.label.take());
    }
}

/// Run `f` under a budget of `limits` (within any budget already in force). Returns what `f`
/// returned and what it spent; `Spent::exhausted` is set when this budget ran out.
pub fn run<T>(limits: Limits, f: impl FnOnce() -> T) -> (T, Spent) {
    let start = USED.get();
    let deadline = limits.wall.and_then(|w| Instant::now().checked_add(w));
    let depth = LEVELS.with_borrow_mut(|levels| {
        let depth = levels.len();
        let end = start.saturating_add(limits.steps);
        levels.push(Level { end, start, limits, deadline, tripped: None });
        END.set(END.get().min(end));
        if deadline.is_some() {
            NEXT_CLOCK.set(NEXT_CLOCK.get().min(start.saturating_add(CLOCK_EVERY)));
        }
        depth
    });
    let guard = Guard { depth, label: LABEL.with_borrow(|l| l.clone()) };
    let out = f();
    let spent = LEVELS
        .with_borrow(|levels| levels.get(depth).map(|l| Spent { steps: USED.get().saturating_sub(l.start), exhausted: l.tripped.clone() }));
    drop(guard);
    (out, spent.unwrap_or(Spent { steps: 0, exhausted: None }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_any_budget_charges_are_free() {
        assert!(charge(u64::MAX).is_ok());
        assert!(charge(1).is_ok());
    }

    #[test]
    fn the_tightest_budget_decides_and_stays_spent() {
        let ((), outer) = run(Limits::steps(100), || {
            let (inner_ok, inner) = run(Limits::steps(10), || (0..20).all(|_| charge(1).is_ok()));
            assert!(!inner_ok);
            assert_eq!(inner.exhausted.map(|e| e.0), Some(Exhausted::Steps { limit: 10 }));
            // The outer budget saw 11 of its 100 units; the inner one no longer applies.
            assert!(charge(50).is_ok());
            label("Heavy");
            assert!(charge(50).is_err());
            assert!(charge(0).is_err(), "a spent budget stays spent");
            assert!(spent());
        });
        let (e, at) = outer.exhausted.unwrap_or((Exhausted::Steps { limit: 0 }, None));
        assert_eq!(e, Exhausted::Steps { limit: 100 });
        assert_eq!(at.as_deref(), Some("Heavy"));
        assert!(charge(1_000_000).is_ok(), "nothing in force after the closure");
    }

    #[test]
    fn the_clock_is_checked_at_charge_points() {
        let (n, spent) = run(Limits { steps: u64::MAX, wall: Some(Duration::from_millis(20)) }, || {
            let start = Instant::now();
            let mut n = 0u64;
            while charge(1).is_ok() {
                n += 1;
                assert!(start.elapsed() < Duration::from_secs(30), "the wall-clock budget never tripped");
            }
            n
        });
        assert!(n > 0);
        assert_eq!(spent.exhausted.map(|e| e.0), Some(Exhausted::Time { limit: Duration::from_millis(20) }));
    }

    #[test]
    fn a_panic_inside_leaves_no_budget_behind() {
        let r = std::panic::catch_unwind(|| {
            run(Limits::steps(1), || {
                let _ = charge(5);
                panic!("boom");
            })
        });
        assert!(r.is_err());
        assert!(charge(1000).is_ok());
    }
}
