//! The waiting room's line: numbered tickets, a let-in counter that moves
//! as places free up, and the bookkeeping that keeps absent visitors from
//! holding places. Pure logic: the caller passes the time and the free
//! places, so the tests can too.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many recent let-ins the estimate is measured over.
const RECENT: usize = 64;

/// The line of one waiting room.
#[derive(Debug)]
pub(super) struct Line {
    /// The number the next ticket gets.
    next: u64,
    /// Tickets below this number have been let in (or skipped).
    let_in: u64,
    /// When each waiting ticket was last asked about: `waiting[i]` is
    /// ticket `let_in + i`.
    waiting: VecDeque<Instant>,
    /// Tickets let in whose holders have not come back yet, each with the
    /// time its place stops being kept for it; in ticket order.
    expected: VecDeque<(u64, Instant)>,
    /// When the last let-ins happened, oldest first, for the estimate.
    recent: VecDeque<Instant>,
    /// A ticket not asked about for this long is abandoned; a let-in
    /// ticket's place is kept this long.
    patience: Duration,
}

/// Where a ticket stands.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Standing {
    /// Its turn has come: its holder may enter.
    In,
    /// Still waiting, at this place (1 is next).
    Waiting(u64),
    /// Not a ticket of this line.
    Unknown,
}

impl Line {
    pub(super) fn new(patience: Duration) -> Self {
        Self {
            next: 1,
            let_in: 1,
            waiting: VecDeque::new(),
            expected: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT),
            patience,
        }
    }

    /// Visitors waiting now.
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Places that may go to a newcomer: the `free` ones not kept for a
    /// let-in ticket on its way. None while anyone waits, so nobody
    /// overtakes the line.
    pub(super) fn spare(&self, free: usize) -> usize {
        match self.waiting.is_empty() {
            true => free.saturating_sub(self.expected.len()),
            false => 0,
        }
    }

    /// A new ticket at the back of the line, asked about `now`.
    pub(super) fn join(&mut self, now: Instant) -> u64 {
        let ticket = self.next;
        self.next += 1;
        self.waiting.push_back(now);
        ticket
    }

    /// Where `ticket` stands, its holder asking `now`. A let-in ticket's
    /// holder has come: its place is no longer kept, the holder takes one.
    pub(super) fn ask(&mut self, ticket: u64, now: Instant) -> Standing {
        if ticket < self.let_in {
            if let Ok(i) = self.expected.binary_search_by_key(&ticket, |&(t, _)| t) {
                self.expected.remove(i);
            }
            return Standing::In;
        }
        let Some(seen) = usize::try_from(ticket - self.let_in)
            .ok()
            .and_then(|i| self.waiting.get_mut(i))
        else {
            return Standing::Unknown;
        };
        *seen = now;
        Standing::Waiting(ticket - self.let_in + 1)
    }

    /// Moves the let-in counter: first past abandoned tickets at the front,
    /// then, for each of the `free` places not kept for another let-in
    /// ticket, past one more ticket whose holder is still there, keeping a
    /// place for it. Places kept too long are given up first.
    pub(super) fn advance(&mut self, now: Instant, free: usize) {
        while self
            .expected
            .front()
            .is_some_and(|&(_, until)| until <= now)
        {
            self.expected.pop_front();
        }
        let mut spare = free.saturating_sub(self.expected.len());
        while let Some(&seen) = self.waiting.front() {
            let abandoned = now.saturating_duration_since(seen) > self.patience;
            if !abandoned && spare == 0 {
                break;
            }
            self.waiting.pop_front();
            let ticket = self.let_in;
            self.let_in += 1;
            if !abandoned {
                self.expected.push_back((ticket, now + self.patience));
                self.counted(now);
                spare -= 1;
            }
        }
    }

    /// Notes a visitor let in (a ticket, or a newcomer who never waited):
    /// the estimate measures these.
    pub(super) fn counted(&mut self, now: Instant) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
    }

    /// Seconds until the visitor at `place` is let in, at the rate of the
    /// recent let-ins; `None` before anyone has been.
    pub(super) fn estimate(&self, place: u64, now: Instant) -> Option<u64> {
        let oldest = *self.recent.front()?;
        // Measured from the oldest recent let-in until now, so that the
        // rate falls while nobody is let in.
        let span = now.duration_since(oldest).max(Duration::from_secs(1));
        let per_second = self.recent.len() as f64 / span.as_secs_f64();
        Some((place as f64 / per_second).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(15);

    fn at(seconds: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_secs(seconds)
    }

    #[test]
    fn tickets_are_let_in_in_order_as_places_free_up() {
        let mut line = Line::new(PATIENCE);
        let tickets: Vec<u64> = (0..3).map(|_| line.join(at(0))).collect();
        assert_eq!(line.ask(tickets[2], at(1)), Standing::Waiting(3));
        line.advance(at(1), 0);
        assert_eq!(
            line.ask(tickets[0], at(1)),
            Standing::Waiting(1),
            "no place yet"
        );
        line.advance(at(2), 1);
        assert_eq!(line.ask(tickets[1], at(2)), Standing::Waiting(1));
        assert_eq!(line.ask(tickets[2], at(2)), Standing::Waiting(2));
        assert_eq!(line.ask(tickets[0], at(2)), Standing::In);
        assert_eq!(line.ask(tickets[0] + 100, at(2)), Standing::Unknown);
    }

    #[test]
    fn a_place_kept_for_a_ticket_on_its_way_is_not_given_twice() {
        let mut line = Line::new(PATIENCE);
        let (first, second) = (line.join(at(0)), line.join(at(0)));
        line.advance(at(1), 1);
        line.advance(at(2), 1);
        assert_eq!(
            line.ask(second, at(2)),
            Standing::Waiting(1),
            "kept for the first"
        );
        assert_eq!(line.ask(first, at(3)), Standing::In);
        line.advance(at(3), 1);
        assert_eq!(line.ask(second, at(3)), Standing::In);
    }

    #[test]
    fn a_ticket_whose_holder_does_not_come_loses_its_kept_place() {
        let mut line = Line::new(PATIENCE);
        let (_absent, second) = (line.join(at(0)), line.join(at(0)));
        line.advance(at(1), 1);
        assert_eq!(line.ask(second, at(10)), Standing::Waiting(1));
        line.advance(at(17), 1);
        assert_eq!(line.ask(second, at(17)), Standing::In);
    }

    #[test]
    fn abandoned_tickets_are_skipped_without_using_a_place() {
        let mut line = Line::new(PATIENCE);
        let (_gone, waits, _also_gone) = (line.join(at(0)), line.join(at(0)), line.join(at(0)));
        assert_eq!(line.ask(waits, at(10)), Standing::Waiting(2));
        // No place, but the abandoned ticket at the front is dropped.
        line.advance(at(20), 0);
        assert_eq!(line.ask(waits, at(20)), Standing::Waiting(1));
        assert_eq!(line.len(), 2);
        line.advance(at(21), 1);
        assert_eq!(line.ask(waits, at(21)), Standing::In);
        // The third, abandoned too, is skipped with no place left to give.
        line.advance(at(40), 0);
        assert_eq!(line.len(), 0);
    }

    #[test]
    fn newcomers_get_spare_places_only_while_nobody_waits() {
        let mut line = Line::new(PATIENCE);
        assert_eq!(line.spare(2), 2);
        let ticket = line.join(at(0));
        assert_eq!(line.spare(2), 0, "someone waits");
        line.advance(at(1), 2);
        assert_eq!(line.spare(2), 1, "one place kept for the let-in ticket");
        assert_eq!(line.ask(ticket, at(2)), Standing::In);
        assert_eq!(line.spare(2), 2);
    }

    #[test]
    fn the_estimate_follows_the_rate_of_recent_let_ins() {
        let mut line = Line::new(PATIENCE);
        assert_eq!(line.estimate(1, at(0)), None, "nothing measured yet");
        for second in 0..10 {
            line.counted(at(second));
        }
        // Ten let-ins in ten seconds: one a second.
        assert_eq!(line.estimate(30, at(10)), Some(30));
        // Nobody let in for another ten seconds: half the rate.
        assert_eq!(line.estimate(30, at(20)), Some(60));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Join,
        Ask(usize),
        Advance(usize),
        Wait(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            Just(Step::Join),
            (0usize..64).prop_map(Step::Ask),
            (0usize..4).prop_map(Step::Advance),
            (1u64..20).prop_map(Step::Wait),
        ]
    }

    proptest! {
        /// Whatever happens, the line keeps its shape: the tickets let in
        /// are the first ones given (first come, first served), places are
        /// kept for let-in tickets only, in ticket order, and never for more
        /// than there were free.
        #[test]
        fn the_line_keeps_its_order(steps in proptest::collection::vec(step(), 1..200)) {
            let mut line = Line::new(PATIENCE);
            let mut now = 0;
            let mut tickets = Vec::new();
            for step in steps {
                match step {
                    Step::Join => tickets.push(line.join(at(now))),
                    Step::Ask(i) if !tickets.is_empty() => {
                        let ticket = tickets[i % tickets.len()];
                        let standing = line.ask(ticket, at(now));
                        let expected = match ticket < line.let_in {
                            true => Standing::In,
                            false => Standing::Waiting(ticket - line.let_in + 1),
                        };
                        prop_assert_eq!(standing, expected);
                    }
                    Step::Ask(_) => {}
                    Step::Advance(free) => {
                        let before = line.expected.len();
                        line.advance(at(now), free);
                        prop_assert!(line.expected.len() <= free.max(before));
                    }
                    Step::Wait(seconds) => now += seconds,
                }
                prop_assert_eq!(line.waiting.len() as u64, line.next - line.let_in);
                let kept: Vec<u64> = line.expected.iter().map(|&(t, _)| t).collect();
                prop_assert!(kept.windows(2).all(|pair| pair[0] < pair[1]), "{:?}", kept);
                prop_assert!(kept.iter().all(|&t| t < line.let_in), "{:?}", kept);
            }
        }
    }
}
