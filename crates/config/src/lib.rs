//! Configuration loading shared by every role.
//!
//! Each role describes its file as a serde struct; this crate turns TOML
//! text into that struct and every mistake into one [`ConfigError`] that
//! names the key (a dotted path like `pools.shop.backends[1]`) and the
//! problem, so that a user fixing a file is never left guessing. [`de`]
//! holds the deserializers for the value types roles share (addresses,
//! durations, IP ranges), each failing with a message that says what was
//! expected.

use std::path::Path;

use serde::de::DeserializeOwned;

pub mod de;

/// A configuration that cannot be run: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key is missing, unknown, or has a bad value.
    #[error("{origin}: `{key}`: {problem}")]
    Invalid {
        /// The file name, or "flags".
        origin: String,
        /// Dotted path of the key.
        key: String,
        /// What is wrong and, where possible, what would be right.
        problem: String,
    },
}

impl ConfigError {
    /// A bad value of `key` found in `origin`.
    pub fn invalid(origin: &str, key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            origin: origin.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Reads a whole configuration file.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Parses TOML `text` into `T`; `origin` names it in errors, and `source`
/// is the text positions refer to when they mean something to the user
/// (not for TOML generated from flags).
pub fn parse<T: DeserializeOwned>(
    text: &str,
    origin: &str,
    source: Option<&str>,
) -> Result<T, ConfigError> {
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::invalid(origin, "(syntax)", describe(&e, source)))?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = match e.path().to_string() {
            root if root == "." => "(top level)".to_owned(),
            path => path,
        };
        ConfigError::invalid(origin, key, describe(e.inner(), source))
    })
}

/// A TOML basic string holding `text` (a JSON string literal is one), for
/// building TOML from command-line flags.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a TOML error as "message (line L, column C)" without the
/// multi-line snippet, so that one error stays one line.
fn describe(error: &toml::de::Error, text: Option<&str>) -> String {
    let message = error.message().trim_end();
    match (error.span(), text) {
        (Some(span), Some(text)) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{message} (line {line}, column {column})")
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default, deserialize_with = "de::opt_duration")]
        timeout: Option<std::time::Duration>,
    }

    #[test]
    fn durations_parse() {
        let sample: Sample = parse("timeout = \"1500ms\"", "t", None).unwrap();
        assert_eq!(sample.timeout, Some(std::time::Duration::from_millis(1500)));
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let error = parse::<Sample>(
            "\ntimeout = \"soon\"",
            "x.toml",
            Some("\ntimeout = \"soon\""),
        )
        .unwrap_err();
        let text = error.to_string();
        assert!(
            text.starts_with("x.toml: `timeout`: `soon` is not a duration"),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
        let error = parse::<Sample>("tiemout = \"1s\"", "flags", None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `tiemout`"), "{error}");
    }

    #[test]
    fn quoted_text_round_trips() {
        #[derive(Deserialize)]
        struct S {
            v: String,
        }
        let tricky = "a \"b\" \\ c\u{1}";
        let parsed: S = parse(&format!("v = {}", quote(tricky)), "t", None).unwrap();
        assert_eq!(parsed.v, tricky);
    }
}
