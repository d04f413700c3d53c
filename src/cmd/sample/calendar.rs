//! The dates a billing row can carry: billing days 1..=28 of each month of the
//! timeline, computed once.

use chrono::{Days, NaiveDate};

use super::LAST_MONTH;
use crate::dates::Month;

/// Day `day` (a billing day, 1..=28, so it exists in every month) of `month`.
pub(super) fn on(month: Month, day: u8) -> NaiveDate {
    month
        .day(day as u32)
        .expect("billing days are 1..=28, which every month has")
}

/// The day before day `day` of `month`: the last day of a period that the
/// next one starts on `day`.
pub(super) fn day_before(month: Month, day: u8) -> NaiveDate {
    on(month, day) - Days::new(1)
}

/// The dates a billing row can carry, computed once by chrono: `on(m, d)` is
/// day `d` (1..=28) of month `m` and `day_before(m, d)` the day before it.
/// A row looks its six dates up instead of building and validating each
/// `NaiveDate`, which cost a twentieth of the generator's instructions.
pub(super) struct Calendar {
    first: Month,
    /// Per month: the day before the 1st, then days 1 to 28.
    days: Vec<[NaiveDate; 29]>,
}

impl Calendar {
    /// The months a timeline starting in `first` can name: subscriptions
    /// start up to 36 months earlier, terms end up to 12 months after
    /// [`LAST_MONTH`].
    pub(super) fn new(first: Month) -> Calendar {
        let first = first.minus(36);
        let days = (first.0..=LAST_MONTH.plus(12).0)
            .map(|m| {
                let m = Month(m);
                let mut row = [day_before(m, 1); 29];
                for (d, date) in row.iter_mut().enumerate().skip(1) {
                    *date = on(m, d as u8);
                }
                row
            })
            .collect();
        Calendar { first, days }
    }

    fn row(&self, month: Month) -> &[NaiveDate; 29] {
        &self.days[(month.0 - self.first.0) as usize]
    }

    /// Day `day` (1..=28) of `month`.
    pub(super) fn on(&self, month: Month, day: u8) -> NaiveDate {
        self.row(month)[day as usize]
    }

    /// The day before day `day` (1..=28) of `month`.
    pub(super) fn day_before(&self, month: Month, day: u8) -> NaiveDate {
        self.row(month)[day as usize - 1]
    }
}
