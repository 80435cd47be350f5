//! [`ConfigError`] and how configured values appear in its messages: keys, route patterns and
//! variable names readable, values that could be secret only in the log.

/// A configuration problem, with the variable it concerns and why. Answered as HTTP 500 with
/// [`ConfigError::public`]; logged in full ([`std::fmt::Display`]).
///
/// Configured values in the message are quoted by [`shown`]: between backticks, with the parts
/// that could be secret (a URL's user information, path and query; anything [`hidden`]) wrapped
/// in the private-use markers [`SECRET_OPEN`] … [`SECRET_CLOSE`], which the log form drops and
/// the public form replaces by `…`. Key names, route patterns and variable names stay readable in
/// both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

/// Opens a span of a [`ConfigError`] message that only the log shows (see [`hidden`]).
pub const SECRET_OPEN: char = '\u{1}';
/// Closes a span opened by [`SECRET_OPEN`].
pub const SECRET_CLOSE: char = '\u{2}';

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration: {}", self.0.replace([SECRET_OPEN, SECRET_CLOSE], ""))
    }
}

impl ConfigError {
    /// The message for any client: keys, route patterns, variable names and plain values kept;
    /// each part that could be secret ([`hidden`] spans: a URL's user information, path and
    /// query) replaced by `…`. Ends by pointing at the log, which has the values.
    pub fn public(&self) -> String {
        let mut out = String::from("invalid configuration: ");
        let mut secret = false;
        for c in self.0.chars() {
            match c {
                SECRET_OPEN if !secret => {
                    secret = true;
                    out.push('…');
                }
                SECRET_CLOSE => secret = false,
                c if !secret => out.push(c),
                _ => {}
            }
        }
        out.push_str(" (see the log for values)");
        out
    }
}

/// A configured value as error messages show it: between backticks (a backtick inside it
/// replaced), with what could be secret in it [`hidden`]: in a URL (`scheme://…`) its user
/// information, path, query and fragment (the scheme and host stay); a value with an `@` but no
/// scheme, whole.
pub fn shown(value: &str) -> String {
    let value = value.replace('`', "'").replace([SECRET_OPEN, SECRET_CLOSE], "");
    let Some(i) = value.find("://") else {
        return if value.contains('@') { format!("`{}`", hidden(&value)) } else { format!("`{value}`") };
    };
    let (scheme, rest) = value.split_at(i + 3);
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let mut out = format!("`{scheme}");
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(&hidden(&authority[..=at]));
            out.push_str(&authority[at + 1..]);
        }
        None => out.push_str(authority),
    }
    if tail.is_empty() || tail == "/" {
        out.push_str(tail);
    } else {
        out.push_str(&hidden(tail));
    }
    out.push('`');
    out
}

/// A value only the log may show (see [`ConfigError`]): wrapped in [`SECRET_OPEN`] …
/// [`SECRET_CLOSE`] (markers inside it removed).
pub fn hidden(value: &str) -> String {
    format!("{SECRET_OPEN}{}{SECRET_CLOSE}", value.replace([SECRET_OPEN, SECRET_CLOSE], ""))
}

/// "unknown key `pirce` in ROUTES[0] (`GET /x`); did you mean `price`?", else the known keys.
pub(super) fn unknown_key(key: &str, at: &str, known: &[&[&str]]) -> ConfigError {
    let all = known.iter().flat_map(|set| set.iter().copied());
    match crate::names::closest(key, all.clone()) {
        Some(k) => ConfigError(format!("unknown key {} in {at}; did you mean {}?", shown(key), shown(k))),
        None => ConfigError(format!("unknown key {} in {at}; known keys: {}", shown(key), all.collect::<Vec<_>>().join(", "))),
    }
}

pub(super) fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}
