//! The store's behaviour, one suite run on SQLite and on PostgreSQL: what
//! the shop relies on must hold the same on both engines.

use stampede_store::orders::{self, Transition};
use stampede_store::products::{self, NewProduct};
use stampede_store::{
    Db, OrderStatus, StoreError, login_limits, migrate, now_ms, sessions, stats, users,
};
use stampede_testkit::store_tests;

fn product(sku: &str, stock: i64) -> NewProduct {
    NewProduct {
        sku: sku.into(),
        name: format!("Product {sku}"),
        price_cents: 100,
        stock,
        per_user_limit: 2,
        sale_starts_at: None,
    }
}

fn users(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), format!("hash-of-{n}")))
        .collect()
}

/// An order written directly (the inventory crate makes real ones), with
/// its units taken off the product.
async fn order(db: &Db, id: &str, user: &str, sku: &str, expires_at: i64) {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO orders (order_id, username, sku, quantity, status, created_at, expires_at, updated_at)
         VALUES ($1, $2, $3, 1, 'reserved', $4, $5, $4)",
    )
    .bind(id)
    .bind(user)
    .bind(sku)
    .bind(now)
    .bind(expires_at)
    .execute(db.pool())
    .await
    .expect("insert an order");
    sqlx::query("UPDATE products SET stock_left = stock_left - 1 WHERE sku = $1")
        .bind(sku)
        .execute(db.pool())
        .await
        .expect("take its unit");
}

store_tests! {
    async fn migrating_again_changes_nothing(t) {
        assert_eq!(migrate::run(&t.db).await.expect("migrate"), 0);
        let (a, b) = tokio::join!(migrate::run(&t.db), migrate::run(&t.db));
        assert_eq!((a.expect("first"), b.expect("second")), (0, 0));
    }

    async fn users_are_created_all_or_nothing(t) {
        users::create_all(&t.db, &users(&["a", "b"])).await.expect("create");
        let clash = users::create_all(&t.db, &users(&["c", "b"])).await;
        assert!(matches!(clash, Err(StoreError::Conflict)), "{clash:?}");
        assert_eq!(users::password_hash(&t.db, "c").await.expect("read"), None, "nothing created");
        assert_eq!(users::password_hash(&t.db, "a").await.expect("read").as_deref(), Some("hash-of-a"));
        // More rows than one INSERT takes.
        let many: Vec<String> = (0..2_500).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        users::create_all(&t.db, &users(&names)).await.expect("create many");
        assert!(users::password_hash(&t.db, "m2499").await.expect("read").is_some());
    }

    async fn sessions_live_until_they_expire_or_end(t) {
        users::create_all(&t.db, &users(&["a"])).await.expect("create");
        let now = now_ms();
        sessions::create(&t.db, "live", "a", now + 60_000).await.expect("create");
        sessions::create(&t.db, "old", "a", now - 1).await.expect("create");
        sessions::create(&t.db, "other", "a", now + 60_000).await.expect("create");
        let read = |hashes: &'static [&'static str]| sessions::usernames(&t.db, hashes);
        let mut live = read(&["live", "old", "other", "never-was"]).await.expect("read");
        live.sort();
        assert_eq!(live, [("live".into(), "a".into()), ("other".into(), "a".into())]);
        assert_eq!(read(&[]).await.expect("read none"), []);
        assert_eq!(sessions::purge_expired(&t.db).await.expect("purge"), 1);
        sessions::delete(&t.db, "live").await.expect("delete");
        sessions::delete(&t.db, "never-was").await.expect("delete an unknown one");
        assert_eq!(read(&["live"]).await.expect("read"), []);
    }

    async fn login_failures_count_per_bucket_and_window(t) {
        let buckets = ["ip:1", "user:a"];
        assert_eq!(login_limits::failures(&t.db, &buckets, 1000).await.expect("read"), [0, 0]);
        login_limits::record_failure(&t.db, &buckets, 1000).await.expect("record");
        login_limits::record_failure(&t.db, &buckets[..1], 1000).await.expect("record");
        login_limits::record_failure(&t.db, &buckets, 2000).await.expect("record");
        assert_eq!(login_limits::failures(&t.db, &buckets, 1000).await.expect("read"), [2, 1]);
        assert_eq!(login_limits::purge(&t.db, 2000).await.expect("purge"), 2);
        assert_eq!(login_limits::failures(&t.db, &buckets, 1000).await.expect("read"), [0, 0]);
        assert_eq!(login_limits::failures(&t.db, &buckets, 2000).await.expect("read"), [1, 1]);
    }

    async fn products_are_unique_and_listed_by_sku(t) {
        let before = now_ms();
        let created = products::create(&t.db, &product("B-1", 5)).await.expect("create");
        assert!(created.sale_starts_at >= before, "on sale from its creation");
        assert!(matches!(products::create(&t.db, &product("B-1", 1)).await, Err(StoreError::Conflict)));
        products::create(&t.db, &product("A-1", 0)).await.expect("create");
        let skus: Vec<String> = products::list(&t.db).await.expect("list").into_iter().map(|p| p.sku).collect();
        assert_eq!(skus, ["A-1", "B-1"]);
        assert_eq!(products::get(&t.db, "B-1").await.expect("get"), Some(created));
        assert_eq!(products::get(&t.db, "C-1").await.expect("get"), None);
    }

    async fn orders_move_on_once_and_return_their_stock(t) {
        users::create_all(&t.db, &users(&["a", "b"])).await.expect("create");
        products::create(&t.db, &product("P-1", 5)).await.expect("create");
        let later = now_ms() + 60_000;
        for id in ["ord_1", "ord_2"] {
            order(&t.db, id, "a", "P-1", later).await;
        }
        order(&t.db, "ord_3", "a", "P-1", now_ms() - 1).await;

        let mut tx = t.db.begin_write().await.expect("begin");
        let paying = orders::start_payment(&mut tx, "ord_1", "a").await.expect("pay");
        assert!(matches!(&paying, Transition::Done(o) if o.status == OrderStatus::Paying), "{paying:?}");
        let again = orders::start_payment(&mut tx, "ord_1", "a").await.expect("pay");
        assert!(matches!(again, Transition::Refused(_)), "{again:?}");
        let lapsed = orders::start_payment(&mut tx, "ord_3", "a").await.expect("pay");
        assert!(matches!(&lapsed, Transition::Refused(o) if o.status == OrderStatus::Reserved), "{lapsed:?}");
        tx.commit().await.expect("commit");
        let theirs = orders::cancel(&t.db, "ord_2", "b").await.expect("cancel");
        assert_eq!(theirs, Transition::NotFound, "another user's order is not found");

        let cancelled = orders::cancel(&t.db, "ord_2", "a").await.expect("cancel");
        assert!(matches!(&cancelled, Transition::Done(o) if o.status == OrderStatus::Cancelled), "{cancelled:?}");
        assert!(matches!(orders::cancel(&t.db, "ord_2", "a").await.expect("cancel"), Transition::Refused(_)));

        let stats = stats::all(&t.db).await.expect("stats");
        let p = &stats[0];
        assert_eq!((p.initial_stock, p.stock_left), (5, 3), "the cancelled unit came back");
        assert_eq!(p.quantity(OrderStatus::Paying), 1);
        assert_eq!(p.quantity(OrderStatus::Reserved), 1);
        assert_eq!(p.quantity(OrderStatus::Cancelled), 1);
        let live: i64 = OrderStatus::ALL.iter().filter(|s| s.is_live()).map(|s| p.quantity(*s)).sum();
        assert_eq!(live + p.stock_left, p.initial_stock, "stock conserved");

        let mine: Vec<String> = orders::list_for_user(&t.db, "a").await.expect("list").into_iter().map(|o| o.order_id).collect();
        assert_eq!(mine.len(), 3);
        assert!(orders::list_for_user(&t.db, "b").await.expect("list").is_empty());
        assert_eq!(orders::remembered(&t.db, "a", "no-such-key").await.expect("read"), None);
    }

    async fn old_idempotency_keys_are_forgotten(t) {
        for (key, created_at) in [("old", 1_i64), ("new", now_ms())] {
            sqlx::query(
                "INSERT INTO idempotency_keys (username, idem_key, fingerprint, order_id, response, created_at)
                 VALUES ('a', $1, 'f', 'ord', '{}', $2)",
            )
            .bind(key)
            .bind(created_at)
            .execute(t.db.pool())
            .await
            .expect("insert a key");
        }
        assert_eq!(orders::prune_idempotency_keys(&t.db, 1_000, 10).await.expect("prune"), 1);
        assert_eq!(orders::remembered(&t.db, "a", "old").await.expect("read"), None);
        assert!(orders::remembered(&t.db, "a", "new").await.expect("read").is_some());
    }
}
