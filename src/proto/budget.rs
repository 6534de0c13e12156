//! A byte budget shared by all connections of one protocol (transform's
//! `--max-buffer`), with reservations that give their bytes back when
//! dropped, so no close path can leak budget.

use std::cell::Cell;
use std::rc::Rc;

#[derive(Debug)]
struct Ledger {
    limit: usize,
    held: Cell<usize>,
}

/// A shared limit on bytes held at once. Cloning shares the same budget.
/// Single-threaded by design, like the loop that uses it.
#[derive(Clone, Debug)]
pub struct Budget {
    ledger: Rc<Ledger>,
}

impl Budget {
    /// A budget of `limit` bytes, none held.
    pub fn new(limit: usize) -> Budget {
        Budget {
            ledger: Rc::new(Ledger {
                limit,
                held: Cell::new(0),
            }),
        }
    }

    /// Reserves `bytes` if what is held plus `bytes` fits the limit.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let held = self.ledger.held.get();
        let fits = held
            .checked_add(bytes)
            .is_some_and(|total| total <= self.ledger.limit);
        if !fits {
            return None;
        }
        self.ledger.held.set(held + bytes);
        Some(Reservation {
            ledger: Rc::clone(&self.ledger),
            bytes,
        })
    }

    /// A reservation of no bytes yet, to grow with
    /// [`Reservation::try_grow`] as data arrives.
    pub fn reserve_none(&self) -> Reservation {
        Reservation {
            ledger: Rc::clone(&self.ledger),
            bytes: 0,
        }
    }

    /// Bytes held now, across all reservations.
    pub fn held(&self) -> usize {
        self.ledger.held.get()
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.ledger.limit
    }
}

/// Bytes charged to a [`Budget`] until this value is dropped.
#[derive(Debug)]
pub struct Reservation {
    ledger: Rc<Ledger>,
    bytes: usize,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `more` bytes to this reservation if what the budget holds plus
    /// `more` fits its limit; false (and nothing changed) otherwise. Lets a
    /// message take from the budget as its data arrives.
    pub fn try_grow(&mut self, more: usize) -> bool {
        let held = self.ledger.held.get();
        let fits = held
            .checked_add(more)
            .is_some_and(|total| total <= self.ledger.limit);
        if fits {
            self.ledger.held.set(held + more);
            self.bytes += more;
        }
        fits
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.ledger.held.set(self.ledger.held.get() - self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_while_it_fits_and_refunds_on_drop() {
        let budget = Budget::new(10);
        let a = budget.try_reserve(6).unwrap();
        assert!(budget.try_reserve(5).is_none());
        let b = budget.try_reserve(4).unwrap();
        assert_eq!(budget.held(), 10);
        drop(a);
        assert_eq!(budget.held(), 4);
        drop(b);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_reservation_grows_while_it_fits_and_refunds_all_on_drop() {
        let budget = Budget::new(10);
        let mut a = budget.try_reserve(0).unwrap();
        let _b = budget.try_reserve(3).unwrap();
        assert!(a.try_grow(4));
        assert!(a.try_grow(3));
        assert!(!a.try_grow(1), "10 held of 10");
        assert_eq!((a.bytes(), budget.held()), (7, 10));
        assert!(!a.try_grow(usize::MAX));
        drop(a);
        assert_eq!(budget.held(), 3);
    }

    #[test]
    fn huge_request_does_not_overflow() {
        let budget = Budget::new(usize::MAX);
        let _a = budget.try_reserve(usize::MAX - 1).unwrap();
        assert!(budget.try_reserve(2).is_none());
    }
}
