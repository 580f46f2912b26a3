//! A waiting room: while a route is at capacity, a new visitor gets a
//! place in line rather than a share of the overload, and is let in, first
//! come first served, as fast as the backends free up places. It is
//! Cloudflare's Waiting Room and Queue-it inside the gateway: no redirect
//! to another site, and the capacity it watches is the route's own
//! concurrency limit.
//!
//! # Who gets in
//!
//! A visitor is known by one cookie (`cookie`, default `stampede_room`)
//! holding a *pass* or a *ticket*, both signed (see `token`), so that
//! nobody can forge one or move their place; an invalid cookie counts as
//! none.
//!
//! - With a valid pass a visitor goes through as usual (the concurrency
//!   limit and its queue still apply). A pass is good for `pass_time` from
//!   when it was given.
//! - A newcomer (no valid cookie) gets in only while nobody waits and the
//!   route has a free place: the place is taken for its request at once,
//!   and the response carries a pass in a `Set-Cookie`.
//! - Otherwise the newcomer gets a ticket, the next number in line, and a
//!   waiting answer: `503` with `{"error": "waiting_room", "place": N,
//!   "estimated_wait_seconds": S, ...}`, or for a browser a small page that
//!   reloads itself (see `page`); `Retry-After` is `poll_interval`.
//! - A ticket holder asks again every `poll_interval`. Once the line's
//!   let-in counter has passed its number, its request goes through, and
//!   the response carries a pass.
//!
//! # How the let-in counter moves
//!
//! Tickets below the counter may enter (see `line`). The counter moves each
//! time the room is asked (every waiting visitor's poll, every newcomer),
//! by as many tickets as there are free places under the route's
//! concurrency limit, less the places already kept for let-in tickets whose
//! holders have not come back yet. Visitors are thus let in at the rate the
//! backends finish requests, never faster than places free up, and not one
//! per poll either. A place kept for a let-in ticket is not taken (a
//! visitor with a pass may still use it), only not offered again, for three
//! poll intervals: the time its holder has to come back, after which the
//! ticket counts as abandoned (below). When the holder comes, its request
//! takes the place if it is free, or queues for one like any other.
//!
//! # Abandoned tickets are skipped
//!
//! A visitor who closes the page stops asking. A ticket not asked about for
//! three poll intervals is abandoned: when it reaches the front of the line
//! it is skipped without a place being kept for it, even while no place is
//! free, so the departed neither hold places nor fill the line. Why skip
//! rather than wait for them: in a flash sale many leave, and a place kept
//! for someone gone is a place nobody uses. A holder who comes back with an
//! abandoned ticket is a newcomer again: the ticket's cookie carries the
//! time it was last asked about, signed, so the room needs no memory of it.
//!
//! # The estimate
//!
//! The rate of the last 64 let-ins (tickets and newcomers alike), measured
//! from the oldest of them until now, so that it falls while nobody gets
//! in; `null` until someone has been let in.
//!
//! # Limits
//!
//! The line lives in this process: several gateways have a line each
//! (passes signed with a shared `secret` are good on all of them), and a
//! restart starts a new line, voiding old tickets (their holders line up
//! again). At most `max_waiting` visitors wait; beyond, newcomers get `503
//! overloaded`. Clients that keep no cookies cannot get past a line.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::HeaderValue;
use metrics::Gauge;
use tokio::sync::Semaphore;

use super::{Admitted, Entry, Scope};
use crate::config::WaitingRoomConfig;
use crate::error::GatewayError;
use crate::fields::Fields;
use crate::telemetry::WAITING_ROOM_WAITING;
use crate::unix_time;

mod line;
mod page;
mod token;

use line::{Line, Standing};
pub(crate) use page::Waiting;
use page::prefers_html;
use token::{Signer, Token};

/// Poll intervals without a poll after which a ticket is abandoned.
const PATIENCE_POLLS: u32 = 3;

/// One route's waiting room.
#[derive(Debug)]
pub(crate) struct WaitingRoom {
    config: WaitingRoomConfig,
    signer: Signer,
    /// Random, so that a ticket of another process's line is void here.
    line_id: u64,
    /// The route's places under its concurrency limit.
    places: Arc<Semaphore>,
    line: Mutex<Line>,
    /// How long an unasked ticket stays valid.
    patience: Duration,
    /// `Path` of the room's cookies: the route's prefix.
    path: String,
    waiting: Gauge,
}

/// What the line decided for one visitor without a pass.
enum Turn {
    /// Let in, with the place taken for its request when one was free.
    In(Admitted),
    /// Ticket `number`, at `place` in line.
    Wait {
        number: u64,
        place: u64,
        estimate: Option<u64>,
    },
    /// The line is full.
    Full,
}

impl WaitingRoom {
    /// The room of the route `scope`, whose places are `places`. Without a
    /// configured `secret` the key is drawn at random.
    pub(crate) fn new(
        config: &WaitingRoomConfig,
        places: Arc<Semaphore>,
        scope: Scope<'_>,
    ) -> Result<Self, getrandom::Error> {
        let mut random_key = [0u8; 32];
        getrandom::fill(&mut random_key)?;
        let mut line_id = [0u8; 8];
        getrandom::fill(&mut line_id)?;
        let key = config
            .secret
            .as_deref()
            .map_or(&random_key[..], str::as_bytes);
        let patience = config.poll_interval * PATIENCE_POLLS;
        Ok(Self {
            // Host and prefix: a cookie of one route is nothing on another.
            signer: Signer::new(
                key,
                &format!("{}{}", scope.host.unwrap_or(""), scope.prefix),
            ),
            line_id: u64::from_le_bytes(line_id),
            places,
            line: Mutex::new(Line::new(patience)),
            patience,
            path: cookie_path(scope.prefix),
            waiting: metrics::gauge!(WAITING_ROOM_WAITING, "pool" => scope.pool.to_owned()),
            config: config.clone(),
        })
    }

    /// Lets a visitor in (with a pass to give when it had none), or puts
    /// them in line: `Waiting`, or `Overloaded` when the line is full.
    pub(crate) fn enter(&self, fields: &(impl Fields + ?Sized)) -> Result<Entry, GatewayError> {
        let clock = unix_time();
        let ticket = match self.token(fields) {
            Some(Token::Pass { until }) if until > clock => return Ok(Entry::default()),
            Some(Token::Ticket { line, number, seen })
                if line == self.line_id
                    && clock.saturating_sub(seen) <= self.patience.as_secs() =>
            {
                Some(number)
            }
            _ => None,
        };
        match self.turn(ticket, Instant::now()) {
            Turn::In(place) => Ok(Entry {
                place,
                pass: Some(self.pass(clock)),
            }),
            Turn::Wait {
                number,
                place,
                estimate,
            } => Err(GatewayError::Waiting(Waiting {
                place,
                estimate,
                poll: self.config.poll_interval.as_secs_f64().ceil() as u64,
                ticket: self.ticket(number, clock),
                html: prefers_html(fields),
            })),
            Turn::Full => Err(GatewayError::Overloaded),
        }
    }

    /// The visitor's signed cookie, if it has one.
    fn token(&self, fields: &(impl Fields + ?Sized)) -> Option<Token> {
        self.signer.verify(fields.cookie(&self.config.cookie)?)
    }

    /// Moves the line on, then places the holder of `ticket`, or a
    /// newcomer.
    fn turn(&self, ticket: Option<u64>, now: Instant) -> Turn {
        let mut line = self.line.lock().unwrap_or_else(PoisonError::into_inner);
        let free = self.places.available_permits();
        line.advance(now, free);
        let standing = ticket.map(|number| (number, line.ask(number, now)));
        let turn = match standing {
            // The place kept for it becomes its own, if free; if not, its
            // request queues for one like any other.
            Some((_, Standing::In)) => Turn::In(Arc::clone(&self.places).try_acquire_owned().ok()),
            Some((number, Standing::Waiting(place))) => Turn::Wait {
                number,
                place,
                estimate: line.estimate(place, now),
            },
            Some((_, Standing::Unknown)) | None => self.newcomer(&mut line, free, now),
        };
        self.waiting.set(line.len() as f64);
        turn
    }

    /// A newcomer takes a spare place if there is one, else a ticket.
    fn newcomer(&self, line: &mut Line, free: usize, now: Instant) -> Turn {
        if line.spare(free) > 0
            && let Ok(place) = Arc::clone(&self.places).try_acquire_owned()
        {
            line.counted(now);
            return Turn::In(Some(place));
        }
        if line.len() >= self.config.max_waiting {
            return Turn::Full;
        }
        let number = line.join(now);
        let place = line.len() as u64;
        Turn::Wait {
            number,
            place,
            estimate: line.estimate(place, now),
        }
    }

    /// A pass from `clock` (Unix time) for `pass_time`.
    fn pass(&self, clock: u64) -> HeaderValue {
        let until = clock + self.config.pass_time.as_secs();
        self.cookie(Token::Pass { until }, self.config.pass_time)
    }

    /// Ticket `number`, asked about at `clock`; the browser forgets it when
    /// the room would have.
    fn ticket(&self, number: u64, clock: u64) -> HeaderValue {
        let ticket = Token::Ticket {
            line: self.line_id,
            number,
            seen: clock,
        };
        self.cookie(ticket, self.patience)
    }

    fn cookie(&self, token: Token, max_age: Duration) -> HeaderValue {
        let cookie = format!(
            "{}={}; Max-Age={}; Path={}; HttpOnly; SameSite=Lax",
            self.config.cookie,
            self.signer.sign(token),
            max_age.as_secs(),
            self.path
        );
        // Every part is checked text: the name a token (config), the value
        // hex digits and dots, the path visible ASCII (`cookie_path`).
        HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static(""))
    }
}

/// The route's prefix as a cookie `Path`, or `/` when it has characters a
/// `Path` cannot hold.
fn cookie_path(prefix: &str) -> String {
    let fits = prefix.bytes().all(|b| b.is_ascii_graphic() && b != b';');
    match prefix.is_empty() || !fits {
        true => "/".to_owned(),
        false => prefix.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn room(places: usize) -> WaitingRoom {
        let config = WaitingRoomConfig::default();
        let places = Arc::new(Semaphore::new(places));
        let scope = Scope {
            pool: "web",
            host: Some("shop.test"),
            prefix: "",
        };
        WaitingRoom::new(&config, places, scope).unwrap()
    }

    /// A request carrying the `name=value` part of `set_cookie`, if any.
    fn visitor(set_cookie: Option<&HeaderValue>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = set_cookie {
            let pair = cookie.to_str().unwrap().split(';').next().unwrap();
            headers.insert("cookie", HeaderValue::from_str(pair).unwrap());
        }
        headers
    }

    fn waiting(entered: Result<Entry, GatewayError>) -> Waiting {
        match entered {
            Err(GatewayError::Waiting(waiting)) => waiting,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    #[test]
    fn newcomers_enter_while_a_place_is_free_then_line_up_in_order() {
        let room = room(1);
        let first = room.enter(&visitor(None)).unwrap();
        assert!(first.place.is_some(), "the free place is taken for it");
        let pass = first.pass.expect("a pass");
        let second = waiting(room.enter(&visitor(None)));
        let third = waiting(room.enter(&visitor(None)));
        assert_eq!((second.place, third.place), (1, 2));
        assert_eq!(
            second.estimate,
            Some(1),
            "one let in within the last second"
        );

        // A pass goes through, place or not.
        let through = room.enter(&visitor(Some(&pass))).unwrap();
        assert!(through.place.is_none() && through.pass.is_none());
        let again = waiting(room.enter(&visitor(Some(&third.ticket))));
        assert_eq!(again.place, 2, "still behind the second");

        drop(first.place);
        let third_asks = waiting(room.enter(&visitor(Some(&third.ticket))));
        assert_eq!(third_asks.place, 1, "the second was let in");
        let second_in = room.enter(&visitor(Some(&second.ticket))).unwrap();
        assert!(second_in.place.is_some() && second_in.pass.is_some());
    }

    #[test]
    fn an_altered_cookie_counts_as_none() {
        let room = room(1);
        let _inside = room.enter(&visitor(None)).unwrap();
        let first = waiting(room.enter(&visitor(None)));
        let ticket = first.ticket.to_str().unwrap().replacen("t.", "x.", 1);
        let forged = waiting(room.enter(&visitor(Some(&HeaderValue::from_str(&ticket).unwrap()))));
        assert_eq!(forged.place, 2, "a newcomer at the back");
        let pass =
            HeaderValue::from_static("stampede_room=p.9999999999.00000000000000000000000000000000");
        assert_eq!(waiting(room.enter(&visitor(Some(&pass)))).place, 3);
    }

    #[test]
    fn cookies_are_scoped_to_the_route_and_http_only() {
        let room = room(1);
        let inside = room.enter(&visitor(None)).unwrap();
        let pass = inside.pass.as_ref().unwrap().to_str().unwrap();
        assert!(pass.starts_with("stampede_room=p."), "{pass}");
        assert!(
            pass.ends_with("; Max-Age=600; Path=/; HttpOnly; SameSite=Lax"),
            "{pass}"
        );
        let ticket = waiting(room.enter(&visitor(None))).ticket;
        assert!(
            ticket.to_str().unwrap().contains("; Max-Age=15;"),
            "{ticket:?}"
        );
    }
}
