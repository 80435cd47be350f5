//! `x402-check [--env NAME] [wrangler.toml]`: checks the paywall's configuration before
//! deploying, on the host, with the parser the Worker runs ([`Config::from_vars`]).
//!
//! Reads the file's `[vars]`, the secret names it can see (the keys of a `.dev.vars` beside it;
//! values are used for the check and never printed), and the bindings (`[[kv_namespaces]]`,
//! `[[durable_objects.bindings]]` and `[[migrations]]`, `[[ratelimits]]`, `[[services]]`). Prints
//! every problem as `FILE:LINE: error|warning: message` followed by a `help:` line, then which
//! routes are priced (price, asset, network, payTo) and which are free. Errors are what the
//! Worker would refuse to start with, plus missing bindings; warnings are fine for local use but
//! not for a deployment (loopback origin or facilitator URLs, a placeholder KV namespace id).
//!
//! With `--env NAME` (`-e NAME`) it checks what `wrangler deploy --env NAME` deploys, as wrangler
//! builds it: `vars` and the bindings are not inherited from the top level (wrangler's
//! "non-inheritable keys"), so they come from `[env.NAME]` alone (`[env.NAME.vars]`,
//! `[[env.NAME.kv_namespaces]]`, …), and a top-level one the environment lacks is warned about;
//! `migrations` are inheritable: the environment's, else the top level's. Secrets come from
//! `.dev.vars.NAME` when it exists, else `.dev.vars` (as `wrangler dev --env NAME` reads them).
//!
//! Exit status: 0 without errors (warnings allowed), 1 with errors, 2 when the file cannot be
//! read or parsed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Map, Value};
use x402_edge_paywall::config::{self, Config, ConfigError};

mod lines;

use lines::{assigns, header, line_of_offset, locate, quoted_after, route_indices, Lines};

/// Largest `wrangler.toml` or `.dev.vars` read, bytes.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Most rounds of "report the error, set the entry it blames aside, parse again".
const MAX_ROUNDS: usize = 64;

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Level {
    Error,
    Warning,
}

struct Problem {
    level: Level,
    /// 1-based line in the checked file; 0 when no line can be named.
    line: usize,
    message: String,
    help: String,
}

/// The keys of a wrangler environment that are not inherited from the top level and that the
/// check reads (wrangler's `EnvironmentNonInheritable`: vars and bindings).
const NOT_INHERITED: [&str; 5] = ["vars", "kv_namespaces", "durable_objects", "services", "ratelimits"];

/// The command line: the file (default `wrangler.toml`) and the environment (`--env NAME`,
/// `-e NAME`, `--env=NAME`); `None` for a usage error.
fn parse_args(args: &[String]) -> Option<(PathBuf, Option<String>)> {
    let (mut path, mut env) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return None,
            "--env" | "-e" => env = Some(it.next()?.clone()),
            _ if a.starts_with("--env=") => env = Some(a["--env=".len()..].to_string()),
            _ if a.starts_with('-') || path.is_some() => return None,
            _ => path = Some(PathBuf::from(a)),
        }
    }
    if env.as_deref().is_some_and(str::is_empty) {
        return None;
    }
    Some((path.unwrap_or_else(|| PathBuf::from("wrangler.toml")), env))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((path, env)) = parse_args(&args) else {
        eprintln!("usage: x402-check [--env NAME] [wrangler.toml]\nChecks the x402 paywall configuration of a wrangler.toml (and the secret names in a .dev.vars beside it) before deploying; with --env, the configuration of [env.NAME] as wrangler deploys it.");
        return ExitCode::from(2);
    };
    match check(&path, env.as_deref()) {
        Ok(errors) if errors > 0 => ExitCode::from(1),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            ExitCode::from(2)
        }
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// The configuration `wrangler --env NAME` deploys: `[env.NAME]`'s own vars and bindings (not
/// inherited), its `migrations` or else the top level's (inherited); the whole file without an
/// environment. Also warns about each top-level key the environment does not inherit and lacks.
fn environment(doc: &Value, text: &str, env: Option<&str>, problems: &mut Vec<Problem>) -> Result<Value, String> {
    let Some(name) = env else { return Ok(doc.clone()) };
    let Some(Value::Object(table)) = doc.get("env").and_then(|e| e.get(name)) else {
        return Err(format!("no [env.{name}] table: the environments defined are {}", environment_names(doc)));
    };
    let mut view = table.clone();
    if !view.contains_key("migrations") {
        if let Some(m) = doc.get("migrations") {
            view.insert("migrations".into(), m.clone());
        }
    }
    let header = text.lines().position(|l| header(l).is_some_and(|h| h == format!("env.{name}") || h.starts_with(&format!("env.{name}.")))).map_or(0, |n| n + 1);
    for key in NOT_INHERITED.iter().filter(|k| doc.get(**k).is_some() && !table.contains_key(**k)) {
        problems.push(Problem {
            level: Level::Warning,
            line: header,
            message: format!("`{key}` is set at the top level but not in [env.{name}]: wrangler does not inherit it, so the {name} deployment has none"),
            help: format!("repeat what the {name} environment needs under [env.{name}] (e.g. [env.{name}.vars], [[env.{name}.kv_namespaces]])"),
        });
    }
    Ok(Value::Object(view))
}

/// The names of the file's environments, for an error.
fn environment_names(doc: &Value) -> String {
    match doc.get("env").and_then(Value::as_object) {
        Some(envs) if !envs.is_empty() => envs.keys().map(String::as_str).collect::<Vec<_>>().join(", "),
        _ => "none".into(),
    }
}

/// Checks `path` (its `[env.NAME]` with `env`), prints the report, and returns how many errors
/// it found.
fn check(path: &Path, env: Option<&str>) -> Result<usize, String> {
    let text = read_bounded(path)?;
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map_or(0, |s| line_of_offset(&text, s.start));
        format!("line {line}: not valid TOML: {}", e.message())
    })?;
    let doc = serde_json::to_value(&doc).map_err(|e| e.to_string())?;
    let file = path.display().to_string();
    let mut problems = Vec::new();
    let doc = environment(&doc, &text, env, &mut problems)?;
    let at = Lines { text: &text, prefix: env.map(|n| format!("env.{n}.")).unwrap_or_default() };

    let mut vars: Map<String, Value> = doc.get("vars").and_then(Value::as_object).cloned().unwrap_or_default();
    let toml_vars: Vec<String> = vars.keys().cloned().collect();

    // Secrets: the names in .dev.vars (wrangler dev's secrets file; `.dev.vars.NAME` for an
    // environment that has one), never their values.
    let dir = path.parent().unwrap_or(Path::new("."));
    let dev_vars_path = env.map(|n| dir.join(format!(".dev.vars.{n}"))).filter(|p| p.is_file()).unwrap_or_else(|| dir.join(".dev.vars"));
    let mut secret_names = Vec::new();
    let dev_vars_seen = dev_vars_path.is_file();
    if dev_vars_seen {
        let dev = read_bounded(&dev_vars_path).map_err(|e| format!("{}: {e}", dev_vars_path.display()))?;
        for (name, value) in parse_dev_vars(&dev) {
            secret_names.push(name.clone());
            vars.insert(name, Value::String(value));
        }
    }
    for name in toml_vars.iter().filter(|n| config::entry(n).is_some_and(|v| v.secret)) {
        problems.push(Problem {
            level: Level::Warning,
            line: at.var_line(name),
            message: format!("{name} is a secret but is set in [vars], in plain text in the repository and the dashboard"),
            help: format!("remove it from [vars] and run `wrangler secret put {name}` (for wrangler dev, put it in .dev.vars)"),
        });
    }

    // Bindings.
    let services: Vec<&str> = doc.get("services").and_then(Value::as_array).into_iter().flatten().filter_map(|s| s.get("binding")?.as_str()).collect();
    if services.contains(&"ORIGIN_SERVICE") {
        vars.insert("ORIGIN_SERVICE".into(), Value::Bool(true));
    }
    let kv: Vec<(&str, &str)> = doc
        .get("kv_namespaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| Some((k.get("binding")?.as_str()?, k.get("id").and_then(Value::as_str).unwrap_or(""))))
        .collect();
    let durable: Vec<(&str, &str)> = doc
        .pointer("/durable_objects/bindings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d.get("name")?.as_str()?, d.get("class_name").and_then(Value::as_str).unwrap_or(""))))
        .collect();
    let sqlite_classes: Vec<&str> = doc
        .get("migrations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|m| m.get("new_sqlite_classes").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str))
        .collect();
    let ratelimits: Vec<&str> = doc.get("ratelimits").and_then(Value::as_array).into_iter().flatten().filter_map(|r| r.get("name")?.as_str()).collect();

    // Misspelt variables: every one, then set aside so the rest can be checked.
    for (name, meant) in config::misspelt_vars(&vars) {
        problems.push(Problem {
            level: Level::Error,
            line: at.var_line(&name),
            message: log_form(&config::misspelt_var_error(&name, meant)),
            help: format!("rename `{name}` to `{meant}`"),
        });
        vars.remove(&name);
    }

    // The Worker's parser, round after round: each error is reported, the entry it blames set
    // aside (a route becomes a placeholder that matches nothing, a variable gets a neutral value),
    // and the rest parsed again, so one run names every problem.
    let mut work = vars.clone();
    let mut seen: Vec<String> = Vec::new();
    let mut set_aside_routes: Vec<usize> = Vec::new();
    let mut parsed = None;
    for _ in 0..MAX_ROUNDS {
        match Config::from_vars(&work) {
            Ok(c) => {
                parsed = Some(c);
                break;
            }
            Err(e) => {
                let message = log_form(&e);
                if seen.contains(&message) {
                    break;
                }
                seen.push(message.clone());
                let missing_secret = config::SECRET_VARS
                    .iter()
                    .copied()
                    .find(|s| message.contains(s) && !vars.contains_key(*s) && (message.contains("not set") || message.contains("needs the secrets")));
                let (line, help) = locate(&at, &message);
                match missing_secret {
                    Some(s) if !dev_vars_seen => problems.push(Problem {
                        level: Level::Warning,
                        line,
                        message: format!("{message} (secrets are not visible here: no .dev.vars)"),
                        help: format!("make sure the secret is set for the deployment: `wrangler secret put {s}`"),
                    }),
                    _ => problems.push(Problem { level: Level::Error, line, message: message.clone(), help }),
                }
                if !set_aside(&mut work, &message, missing_secret, &mut set_aside_routes) {
                    break;
                }
            }
        }
    }

    let parser_errors = problems.iter().any(|p| p.level == Level::Error);
    if let Some(c) = &parsed {
        // With entries set aside, the table is not the user's: its warnings would mislead.
        for w in c.warnings(&vars).into_iter().filter(|_| !parser_errors) {
            problems.push(Problem { level: Level::Warning, line: at.var_line("PAY_TO"), message: w, help: "price a route in ROUTES, or remove PAY_TO if nothing is for sale".into() });
        }
        bindings(c, &at, &kv, &durable, &sqlite_classes, &ratelimits, &mut problems);
        loopback(c, &vars, &at, &mut problems);
    }

    problems.sort_by_key(|p| (p.level, p.line));
    let errors = problems.iter().filter(|p| p.level == Level::Error).count();
    let warnings = problems.len() - errors;
    for p in &problems {
        let level = if p.level == Level::Error { "error" } else { "warning" };
        if p.line > 0 {
            println!("{file}:{}: {level}: {}", p.line, p.message);
        } else {
            println!("{file}: {level}: {}", p.message);
        }
        println!("  help: {}", p.help);
    }
    if dev_vars_seen {
        println!("secrets from {}: {}", dev_vars_path.display(), if secret_names.is_empty() { "none".to_string() } else { secret_names.join(", ") });
    } else {
        println!("secrets: no .dev.vars beside {file}; secrets set with `wrangler secret put` are not visible here");
    }
    if let Some(c) = &parsed {
        let placeholders = !set_aside_routes.is_empty();
        println!("routes{}:", if placeholders { " (those with errors left out)" } else { "" });
        for (i, line) in c.price_lines().iter().enumerate() {
            if set_aside_routes.contains(&i) {
                continue;
            }
            let (key, what) = line.split_once(": ").unwrap_or((line.as_str(), ""));
            let label = match what {
                "free" => "free  ",
                "denied" => "denied",
                _ => "priced",
            };
            let what = match what {
                "free" => "proxied without payment",
                "denied" => "refused, never forwarded",
                _ => what,
            };
            println!("  {label} {key}: {what}");
        }
        println!("  free   every other request: proxied without payment");
        if let Some(key) = &c.payment_context {
            println!("payment context: paid requests carry X402-Payment-Context signed with key {}; public key at {}", key.kid(), x402_edge_paywall::payment_context::JWKS_PATH);
        }
    }
    println!("{errors} error{}, {warnings} warning{}", if errors == 1 { "" } else { "s" }, if warnings == 1 { "" } else { "s" });
    Ok(errors)
}

/// The message as the log shows it, without the `invalid configuration: ` prefix.
fn log_form(e: &ConfigError) -> String {
    let s = e.to_string();
    s.strip_prefix("invalid configuration: ").unwrap_or(&s).to_string()
}

/// `KEY=VALUE` lines (dotenv form: `#` comments, optional `export `, values optionally quoted).
fn parse_dev_vars(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\''))).unwrap_or(v);
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// Sets aside what `message` blames in `work`, so the next round finds the next problem; false
/// when nothing could be.
fn set_aside(work: &mut Map<String, Value>, message: &str, missing_secret: Option<&str>, routes_aside: &mut Vec<usize>) -> bool {
    if let Some(s) = missing_secret {
        let dummy = match s {
            "SIGN_IN_SECRET" => json!("x".repeat(config::MIN_SIGN_IN_SECRET_LEN)),
            _ => Value::Null,
        };
        if dummy.is_null() {
            // A CDP key cannot be faked: the facilitators are checked without credentials.
            work.remove("FACILITATOR_AUTH");
            if let Some(Value::Array(list)) = work.get_mut("FACILITATOR_URL") {
                for f in list.iter_mut().filter(|f| f.is_object()) {
                    f["auth"] = json!("none");
                }
            }
            return true;
        }
        work.insert(s.into(), dummy);
        return true;
    }
    if let Some(&i) = route_indices(message).last() {
        let routes = match work.get("ROUTES") {
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok(),
            other => other.cloned(),
        };
        if let Some(Value::Array(mut list)) = routes {
            if i < list.len() {
                list[i] = json!({ "route": format!("GET /.x402-check/set-aside/{i}"), "free": true });
                routes_aside.push(i);
                work.insert("ROUTES".into(), Value::Array(list));
                return true;
            }
        }
    }
    if message.contains("looks like a price") {
        if let Some(p) = quoted_after(message, "") {
            return work.remove(p).is_some();
        }
    }
    let name = config::KNOWN_NAMES.iter().copied().find(|v| message.starts_with(v));
    let Some(name) = name else { return false };
    let neutral = match name {
        "ORIGIN_URL" | "ORIGIN_SERVICE" => {
            work.remove("ORIGIN_SERVICE");
            json!("https://origin.invalid")
        }
        "FACILITATOR_URL" => json!("https://facilitator.invalid"),
        "PAY_TO" => json!("0x0000000000000000000000000000000000000001"),
        "ROUTES" => json!([]),
        _ => Value::Null,
    };
    if neutral.is_null() {
        return work.remove(name).is_some();
    }
    let name = if name == "ORIGIN_SERVICE" { "ORIGIN_URL" } else { name };
    if work.get(name) == Some(&neutral) {
        return false;
    }
    work.insert(name.into(), neutral);
    true
}

/// The bindings the configuration needs, over `ROUTES` and the MCP servers' priced tools
/// ([`Config::all_routes`]): `PASSES` (KV) while one sells a pass, with a real namespace id;
/// `LEDGER` (Durable Object, class `PaymentLedger`, SQLite migration) while one is priced; every
/// rate limiting binding one names.
fn bindings(c: &Config, at: &Lines, kv: &[(&str, &str)], durable: &[(&str, &str)], sqlite: &[&str], ratelimits: &[&str], out: &mut Vec<Problem>) {
    let text = at.text;
    let header_line = |h: &str| at.header_line(h);
    let key_line = |key: &str, value: &str| text.lines().position(|l| assigns(l, key) && l.contains(&format!("\"{value}\""))).map_or(0, |n| n + 1);
    if c.all_routes().any(|r| r.pass.is_some()) {
        match kv.iter().find(|(b, _)| *b == "PASSES") {
            None => out.push(Problem {
                level: Level::Error,
                line: 0,
                message: "a route or MCP tool sells a pass but the KV namespace binding PASSES is missing".into(),
                help: "run `wrangler kv namespace create PASSES` and add [[kv_namespaces]] with binding = \"PASSES\" and its id".into(),
            }),
            Some((_, id)) if id.is_empty() || id.chars().all(|c| c == '0') || !id.chars().all(|c| c.is_ascii_hexdigit()) => out.push(Problem {
                level: Level::Warning,
                line: if id.is_empty() { header_line("kv_namespaces") } else { key_line("id", id) },
                message: format!("the PASSES KV namespace id `{id}` is a placeholder: fine for wrangler dev, a deployment needs a real namespace"),
                help: "run `wrangler kv namespace create PASSES` and put the id it prints here".into(),
            }),
            Some(_) => {}
        }
    }
    if c.all_routes().any(|r| !r.is_free()) {
        match durable.iter().find(|(n, _)| *n == "LEDGER") {
            None => out.push(Problem {
                level: Level::Error,
                line: 0,
                message: "priced routes and MCP tools need the payment ledger, but the Durable Object binding LEDGER is missing".into(),
                help: "add [[durable_objects.bindings]] with name = \"LEDGER\" and class_name = \"PaymentLedger\" (and a [[migrations]] entry with new_sqlite_classes = [\"PaymentLedger\"])".into(),
            }),
            Some((_, class)) if *class != "PaymentLedger" => out.push(Problem {
                level: Level::Error,
                line: key_line("class_name", class),
                message: format!("the Durable Object binding LEDGER has class `{class}`; the payment ledger is class PaymentLedger"),
                help: "set class_name = \"PaymentLedger\"".into(),
            }),
            Some(_) if !sqlite.contains(&"PaymentLedger") => out.push(Problem {
                level: Level::Error,
                line: header_line("durable_objects.bindings"),
                message: "the PaymentLedger class has no SQLite migration: the ledger stores its records in SQLite".into(),
                help: "add [[migrations]] with tag = \"v1\" and new_sqlite_classes = [\"PaymentLedger\"]".into(),
            }),
            Some(_) => {}
        }
    }
    let mut named: Vec<&str> = c.all_routes().flat_map(|r| r.rate_limits.bindings()).collect();
    named.sort_unstable();
    named.dedup();
    for b in named.into_iter().filter(|b| !ratelimits.contains(b)) {
        let line = text.lines().position(|l| l.contains(&format!("\"{b}\""))).map_or(0, |n| n + 1);
        out.push(Problem {
            level: Level::Error,
            line,
            message: format!("rate limit binding `{b}` is missing"),
            help: format!("declare it: [[ratelimits]] with name = \"{b}\", a namespace_id, and simple = {{ limit = 100, period = 60 }}"),
        });
    }
}

/// Whether an `http(s)` URL's host is a loopback one (as the configuration's `require_tls` has it).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Loopback URLs work under `wrangler dev` and nowhere else.
fn loopback(c: &Config, vars: &Map<String, Value>, at: &Lines, out: &mut Vec<Problem>) {
    let mut urls: Vec<(&str, String)> = Vec::new();
    if let config::OriginTarget::Url { base, .. } = &c.origin {
        urls.push(("ORIGIN_URL", base.clone()));
    }
    for (i, f) in c.facilitators.iter().enumerate() {
        urls.push(("FACILITATOR_URL", if c.facilitators.len() > 1 { format!("{}#{i}", f.url) } else { f.url.clone() }));
    }
    if let Some(u) = &c.rpc_url {
        urls.push(("RPC_URL", u.clone()));
    }
    if let Some(u) = &c.public_url {
        urls.push(("PUBLIC_URL", u.clone()));
    }
    for (name, url) in urls {
        let url = url.split('#').next().unwrap_or_default().to_string();
        if !is_loopback(&url) || !vars.contains_key(name) {
            continue;
        }
        out.push(Problem {
            level: Level::Warning,
            line: at.var_line(name),
            message: format!("{name} `{url}` is a loopback address: fine for local use (wrangler dev), not for a deployment: a deployed Worker cannot reach your machine"),
            help: match name {
                "ORIGIN_URL" => "set the https URL of your API, or bind an origin Worker as ORIGIN_SERVICE".to_string(),
                "FACILITATOR_URL" => "set a public facilitator, e.g. https://x402.org/facilitator (testnet) or the CDP facilitator with FACILITATOR_AUTH = \"cdp\"".to_string(),
                _ => format!("set a public https URL for {name}"),
            },
        });
    }
}
