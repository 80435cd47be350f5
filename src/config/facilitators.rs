//! `FACILITATOR_URL` and the facilitators' credentials (`FACILITATOR_AUTH`,
//! `FACILITATOR_AUTH_<NAME>`, the CDP API key).

use serde_json::{Map, Value};

use crate::facilitator::cdp::CdpKey;

use super::{err, http_url, require_tls, shown, string_var, ConfigError};

/// How the paywall authenticates its calls to one facilitator.
#[derive(Clone, PartialEq, Eq)]
pub enum FacilitatorAuth {
    /// No `Authorization` header.
    None,
    /// The value of this facilitator's secret (`FACILITATOR_AUTH` or `FACILITATOR_AUTH_<NAME>`),
    /// sent verbatim as the `Authorization` header.
    Header(String),
    /// A fresh CDP JWT per call (`Authorization: Bearer <jwt>`), signed with the CDP API key
    /// (`CDP_API_KEY_ID`, `CDP_API_KEY_SECRET`); see [`crate::facilitator::cdp`].
    Cdp(std::rc::Rc<CdpKey>),
}

impl std::fmt::Debug for FacilitatorAuth {
    /// Names the mode, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FacilitatorAuth::None => f.write_str("none"),
            FacilitatorAuth::Header(_) => f.write_str("header"),
            FacilitatorAuth::Cdp(k) => write!(f, "cdp({})", k.id),
        }
    }
}

/// One facilitator: its base URL (no trailing `/`; `/verify` and `/settle` are appended) and how
/// calls to it are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facilitator {
    pub url: String,
    pub auth: FacilitatorAuth,
}

/// Most facilitators `FACILITATOR_URL` may list.
pub const MAX_FACILITATORS: usize = 4;

/// Prefix of the secrets that hold one facilitator's credentials (`FACILITATOR_AUTH_<NAME>`),
/// named by that facilitator's `auth` in `FACILITATOR_URL`.
pub const FACILITATOR_AUTH_PREFIX: &str = "FACILITATOR_AUTH_";

/// Whether `name` is `FACILITATOR_AUTH` or `FACILITATOR_AUTH_<NAME>` (`<NAME>`: `A-Z`, `0-9`, `_`).
pub fn is_facilitator_auth_var(name: &str) -> bool {
    name == "FACILITATOR_AUTH"
        || name.strip_prefix(FACILITATOR_AUTH_PREFIX).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
}

/// `FACILITATOR_URL`: one URL, a comma-separated list, or a JSON array whose entries are URLs or
/// `{"url": …, "auth": …}`. Credentials are per facilitator, so a fallback never receives
/// another facilitator's secret. An entry's `auth` is `"none"`, `"cdp"` (a CDP JWT per call,
/// signed with `CDP_API_KEY_ID` / `CDP_API_KEY_SECRET`), or the name of the secret holding its
/// credentials: `FACILITATOR_AUTH` (`"header"` is kept as another name for it) or
/// `FACILITATOR_AUTH_<NAME>`; such a secret's value `cdp` means CDP, any other value is sent as
/// the `Authorization` header. An entry without `auth`: the first facilitator takes
/// `FACILITATOR_AUTH` (the single-facilitator form), every later one sends nothing.
pub(super) fn facilitators(vars: &Map<String, Value>) -> Result<Vec<Facilitator>, ConfigError> {
    // The CDP key is parsed once, however many facilitators use it.
    let key = std::cell::OnceCell::new();
    let cdp = || -> Result<FacilitatorAuth, ConfigError> {
        let parsed = key.get_or_init(|| {
            let id = string_var(vars, "CDP_API_KEY_ID")?;
            let secret = string_var(vars, "CDP_API_KEY_SECRET")?;
            match (id, secret) {
                (Some(id), Some(secret)) => Ok(std::rc::Rc::new(CdpKey::parse(&id, &secret).map_err(ConfigError)?)),
                _ => err("CDP facilitator authentication needs the secrets CDP_API_KEY_ID and CDP_API_KEY_SECRET"),
            }
        });
        parsed.clone().map(FacilitatorAuth::Cdp)
    };
    // The credentials a secret holds: `cdp`, else its value as the header; unset: `None`.
    let from_secret = |name: &str| -> Result<Option<FacilitatorAuth>, ConfigError> {
        match string_var(vars, name)? {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("cdp") => cdp().map(Some),
            Some(v) => Ok(Some(FacilitatorAuth::Header(v))),
        }
    };
    let raw = match vars.get("FACILITATOR_URL") {
        Some(Value::Array(a)) => Value::Array(a.clone()),
        _ => match string_var(vars, "FACILITATOR_URL")? {
            None => return err("FACILITATOR_URL is not set"),
            Some(s) if s.starts_with('[') => serde_json::from_str(&s).or_else(|e| err(format!("FACILITATOR_URL is not a valid JSON array: {e}")))?,
            Some(s) => Value::Array(s.split(',').map(|u| Value::String(u.trim().to_string())).collect()),
        },
    };
    let Value::Array(entries) = raw else { return err("FACILITATOR_URL must be a URL or a list of them") };
    if entries.is_empty() || entries.len() > MAX_FACILITATORS {
        return err(format!("FACILITATOR_URL lists {} facilitators: use 1 to {MAX_FACILITATORS}", entries.len()));
    }
    let mut list: Vec<Facilitator> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("FACILITATOR_URL[{i}]");
        let (url, auth) = match entry {
            Value::String(u) => (u.as_str(), None),
            Value::Object(o) => {
                if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "url" | "auth")) {
                    return err(format!("{at}: unknown key {}", shown(k)));
                }
                let Some(Value::String(u)) = o.get("url") else { return err(format!("{at}: `url` must be a string")) };
                (u.as_str(), o.get("auth"))
            }
            _ => return err(format!("{at}: must be a URL or {{\"url\", \"auth\"}}")),
        };
        let auth = match auth {
            None if i == 0 => from_secret("FACILITATOR_AUTH")?.unwrap_or(FacilitatorAuth::None),
            None => FacilitatorAuth::None,
            Some(Value::String(a)) if a == "none" => FacilitatorAuth::None,
            Some(Value::String(a)) if a == "cdp" => cdp()?,
            Some(Value::String(a)) if a == "header" || is_facilitator_auth_var(a) => {
                let name = if a == "header" { "FACILITATOR_AUTH" } else { a.as_str() };
                from_secret(name)?.ok_or_else(|| ConfigError(format!("{at}: auth names the secret {name}, which is not set")))?
            }
            Some(_) => return err(format!("{at}: auth must be \"none\", \"cdp\", or the name of a secret: FACILITATOR_AUTH or {FACILITATOR_AUTH_PREFIX}<NAME> (A-Z, 0-9, _)")),
        };
        let url = http_url(&at, url)?;
        require_tls(&at, &url)?;
        if list.iter().any(|f| f.url == url) {
            return err(format!("{at}: {} is listed twice", shown(&url)));
        }
        list.push(Facilitator { url, auth });
    }
    Ok(list)
}
