//! The reservation path against real SQLite and PostgreSQL databases: a
//! crowd racing for a few units through the group-commit queues, and the
//! idempotency rules, checked against what the store then holds.

use std::sync::Arc;

use stampede_inventory::{
    GroupCommit, Idempotency, Outcome, Refusal, Reservation, ReserveError, Settings,
};
use stampede_store::products::{self, NewProduct};
use stampede_store::{Db, OrderStatus, stats, users};
use stampede_testkit::store_tests;

async fn setup(db: &Db, buyers: usize, stock: i64, per_user_limit: i64) {
    let users: Vec<(String, String)> = (0..buyers)
        .map(|i| (format!("u{i}"), "hash".to_owned()))
        .collect();
    users::create_all(db, &users).await.expect("create users");
    let product = NewProduct {
        sku: "VAX-001".into(),
        name: "Vaccine slot".into(),
        price_cents: 1999,
        stock,
        per_user_limit,
        sale_starts_at: None,
    };
    products::create(db, &product)
        .await
        .expect("create the product");
}

fn queues(db: &Db) -> GroupCommit {
    GroupCommit::new(db.clone(), Settings::default(), |order| {
        format!("{{\"order_id\":\"{}\"}}", order.order_id)
    })
}

fn request(user: usize, quantity: i64, key: Option<&str>) -> Reservation {
    Reservation {
        username: format!("u{user}"),
        quantity,
        idempotency: key.map(|k| Idempotency {
            key: k.to_owned(),
            fingerprint: format!("VAX-001:{quantity}"),
        }),
    }
}

store_tests! {
    async fn a_crowd_never_oversells(t) {
        let (buyers, stock) = (300, 40);
        setup(&t.db, buyers, stock, 1).await;
        let queues = Arc::new(queues(&t.db));
        let mut tasks = Vec::new();
        // Every buyer asks twice: once alone, once in the same crowd.
        for user in (0..buyers).chain(0..buyers) {
            let queues = Arc::clone(&queues);
            tasks.push(tokio::spawn(async move { queues.reserve("VAX-001", request(user, 1, None)).await }));
        }
        let (mut reserved, mut sold_out, mut over_limit) = (0, 0, 0);
        for task in tasks {
            match task.await.expect("task").expect("reserve").outcome {
                Outcome::Reserved { .. } => reserved += 1,
                Outcome::Refused(Refusal::SoldOut) => sold_out += 1,
                Outcome::Refused(Refusal::LimitExceeded) => over_limit += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(reserved, stock, "every unit sold exactly once");
        assert_eq!(reserved + sold_out + over_limit, 2 * buyers as i64);
        let stats = stats::all(&t.db).await.expect("stats");
        assert_eq!(stats[0].stock_left, 0);
        assert_eq!(stats[0].quantity(OrderStatus::Reserved), stock);
    }

    async fn the_limit_counts_live_orders_across_batches(t) {
        setup(&t.db, 1, 10, 2).await;
        let queues = queues(&t.db);
        let first = queues.reserve("VAX-001", request(0, 2, None)).await.expect("reserve");
        assert!(matches!(first.outcome, Outcome::Reserved { .. }));
        assert_eq!(first.stock_left, Some(8));
        let second = queues.reserve("VAX-001", request(0, 1, None)).await.expect("reserve");
        assert_eq!(second.outcome, Outcome::Refused(Refusal::LimitExceeded));
        let unknown = queues.reserve("NOPE", request(0, 1, None)).await.expect("reserve");
        assert_eq!(unknown.outcome, Outcome::Refused(Refusal::NotFound));
        assert_eq!(unknown.stock_left, None);
    }

    async fn an_idempotency_key_replays_its_201_and_refuses_other_bodies(t) {
        setup(&t.db, 2, 10, 5).await;
        let queues = queues(&t.db);
        let first = queues.reserve("VAX-001", request(0, 1, Some("k1"))).await.expect("reserve").outcome;
        let Outcome::Reserved { body, .. } = first else { panic!("expected a reservation, got {first:?}") };
        let again = queues.reserve("VAX-001", request(0, 1, Some("k1"))).await.expect("reserve").outcome;
        assert_eq!(again, Outcome::Replayed(body));
        let other = queues.reserve("VAX-001", request(0, 2, Some("k1"))).await.expect("reserve").outcome;
        assert_eq!(other, Outcome::Mismatch);
        // Keys belong to a user: another user's same key is a new request.
        let theirs = queues.reserve("VAX-001", request(1, 1, Some("k1"))).await.expect("reserve").outcome;
        assert!(matches!(theirs, Outcome::Reserved { .. }), "{theirs:?}");
        let stats = stats::all(&t.db).await.expect("stats");
        assert_eq!(stats[0].stock_left, 8, "the replay reserved nothing");
    }

    async fn the_same_key_in_one_crowd_reserves_once(t) {
        setup(&t.db, 1, 100, 100).await;
        let queues = Arc::new(queues(&t.db));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let queues = Arc::clone(&queues);
                tokio::spawn(async move { queues.reserve("VAX-001", request(0, 1, Some("same"))).await })
            })
            .collect();
        let mut bodies = Vec::new();
        for task in tasks {
            match task.await.expect("task").expect("reserve").outcome {
                Outcome::Reserved { body, .. } | Outcome::Replayed(body) => bodies.push(body),
                other => panic!("unexpected {other:?}"),
            }
        }
        bodies.dedup();
        assert_eq!(bodies.len(), 1, "one order, replayed to every copy");
        assert_eq!(stats::all(&t.db).await.expect("stats")[0].stock_left, 99);
    }
}

store_tests! {
    async fn a_full_queue_sheds_load_at_once(t) {
        setup(&t.db, 4, 100, 10).await;
        let settings = Settings { max_batch: 1, max_waiting: 2, ..Settings::default() };
        let queues = Arc::new(GroupCommit::new(t.db.clone(), settings, |o| o.order_id.clone()));
        // Another writer holds the product row, so the first batch waits.
        let mut blocker = t.db.begin_write().await.expect("begin");
        sqlx::query("UPDATE products SET name = name WHERE sku = 'VAX-001'")
            .execute(&mut *blocker)
            .await
            .expect("lock the row");
        let spawn = |user| {
            let queues = Arc::clone(&queues);
            tokio::spawn(async move { queues.reserve("VAX-001", request(user, 1, None)).await })
        };
        let committing = spawn(0);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let waiting = [spawn(1), spawn(2)];
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let shed = queues.reserve("VAX-001", request(3, 1, None)).await;
        assert!(matches!(shed, Err(ReserveError::Overloaded)), "{shed:?}");

        blocker.rollback().await.expect("rollback");
        for task in std::iter::once(committing).chain(waiting) {
            let reply = task.await.expect("task").expect("reserved once the lock is gone");
            assert!(matches!(reply.outcome, Outcome::Reserved { .. }), "{:?}", reply.outcome);
        }
    }
}
