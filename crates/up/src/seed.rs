//! The demo data of a fresh cluster: one product on sale now and a few users
//! to buy it, created through the admin API like any operator would.
//!
//! Whether a start is fresh is the API's answer, not a guess from files:
//! `201` means the data was missing (a new database), `409 exists` that an
//! earlier start made it. The users' passwords are random and kept in
//! `<data-dir>/demo-users` (mode 0600), written before the users are
//! created, so that every later start prints the same working session.

use std::path::{Path, PathBuf};

use crate::UpError;
use crate::files;
use crate::http::{AdminApi, Created};
use stampede_client::{NewProduct, NewUser};

/// The demo product's sku.
pub(crate) const DEMO_SKU: &str = "DEMO-001";

/// The file of the demo users' passwords, in the data directory.
const USERS_FILE: &str = "demo-users";

/// How many demo users there are.
const USERS: usize = 3;

/// A demo user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DemoUser {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// What seeding found and did.
#[derive(Debug)]
pub(crate) struct Demo {
    /// Whether the product was created now.
    pub(crate) product_created: bool,
    /// Whether the users were created now.
    pub(crate) users_created: bool,
    /// The users with their passwords; `None` when the database has demo
    /// users whose passwords this data directory does not know (it was
    /// made for another database).
    pub(crate) users: Option<Vec<DemoUser>>,
    /// Where the passwords are kept.
    pub(crate) users_file: PathBuf,
}

/// Creates the demo product and users unless they exist.
pub(crate) async fn seed(api: &AdminApi, data_dir: &Path) -> Result<Demo, UpError> {
    let product = NewProduct {
        sku: DEMO_SKU.to_owned(),
        name: "Demo flash-sale item".to_owned(),
        price_cents: 1999,
        stock: 100,
        per_user_limit: 1,
    };
    let product_created = api.create_product(&product).await? == Created::New;

    let users_file = data_dir.join(USERS_FILE);
    let generated = files::create_private(&users_file, &format_users(&generate()?))?;
    let text = files::read_if_exists(&users_file)?.unwrap_or_default();
    let users = parse_users(&text).ok_or_else(|| UpError::DamagedFile {
        path: users_file.clone(),
        problem: "each line should be `USERNAME PASSWORD`",
    })?;
    let new_users: Vec<NewUser> = users
        .iter()
        .map(|u| NewUser {
            username: u.username.clone(),
            password: u.password.clone(),
        })
        .collect();
    let created = api.create_users(&new_users).await?;
    let known = match created {
        Created::New => true,
        // Made by an earlier start with these passwords...
        Created::Existed if !generated => true,
        // ...or by a start with another data directory: the passwords just
        // written are wrong, so they must not stay.
        Created::Existed => {
            let _ = std::fs::remove_file(&users_file);
            false
        }
    };
    Ok(Demo {
        product_created,
        users_created: created == Created::New,
        users: known.then_some(users),
        users_file,
    })
}

/// New demo users `demo1`, `demo2`, ... with random passwords.
fn generate() -> Result<Vec<DemoUser>, UpError> {
    (1..=USERS)
        .map(|i| {
            Ok(DemoUser {
                username: format!("demo{i}"),
                password: files::random_hex(12)?,
            })
        })
        .collect()
}

fn format_users(users: &[DemoUser]) -> String {
    let mut text = String::from("# stampede up: the demo users, one `USERNAME PASSWORD` a line\n");
    for user in users {
        text.push_str(&format!("{} {}\n", user.username, user.password));
    }
    text
}

/// The users of a demo-users file; `None` if a line is not `NAME PASSWORD`
/// or there is none.
fn parse_users(text: &str) -> Option<Vec<DemoUser>> {
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    let users: Option<Vec<DemoUser>> = lines
        .map(|line| {
            let mut words = line.split_whitespace();
            let (username, password) = (words.next()?, words.next()?);
            words.next().is_none().then(|| DemoUser {
                username: username.to_owned(),
                password: password.to_owned(),
            })
        })
        .collect();
    users.filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_users_survive_the_file() {
        let users = generate().expect("users");
        assert_eq!(users.len(), USERS);
        assert_eq!(users[0].username, "demo1");
        assert_eq!(users[0].password.len(), 24);
        assert_eq!(parse_users(&format_users(&users)), Some(users));
    }

    #[test]
    fn damaged_files_are_refused() {
        assert_eq!(parse_users("# only a comment\n"), None);
        assert_eq!(parse_users("demo1\n"), None);
        assert_eq!(parse_users("demo1 pw extra\n"), None);
        assert_eq!(
            parse_users("\n  demo1   pw  \n"),
            Some(vec![DemoUser {
                username: "demo1".into(),
                password: "pw".into()
            }])
        );
    }
}
