//! `MCP`: MCP servers behind the paywall whose tools are priced per call (x402's MCP transport,
//! docs/mcp.md). Each entry names the server's path and prices its tools:
//!
//! ```toml
//! [[vars.MCP]]
//! path = "/mcp"
//! default = "free"                      # or "deny", or a price such as "$0.01"
//! tools = { search = "$0.01", summarize = { price = "$0.05", description = "A summary" } }
//! ```
//!
//! A tool's value is a price string or a table with a route's payment keys (`price`, `amount`,
//! `accepts`, `network`, `payTo`, `asset`, …, plus `description`, `mimeType`, `verify`,
//! `rateLimit`, `pass`): it is parsed as a `POST {path}` route by the same code as `ROUTES`, so
//! prices, assets, networks, recipients and pass terms follow the one model. Tools are matched by
//! their exact name (byte for byte, as `@modelcontextprotocol/sdk`'s `McpServer` looks them up).
//!
//! Passes: a tool's `pass = { ttl, maxRequests }` opens that tool only (its route key,
//! `POST {path} tool:{name}`); the server's `pass = { ttl, maxRequests }` is sold by every priced
//! tool's paid call and opens every priced tool of that server (a group of the server's own,
//! [`server_pass_group`]), so each tool's price must cover every other's (the rule of a route
//! group's pass). Refused with a message: a pass on `default` (it would be one pass for every
//! unnamed tool), a tool pass's `scope`, a tool's `group`, a server pass next to a tool's own, a
//! server pass with nothing priced; and, as before, `settle = "before"` and metered (`upto`)
//! prices.

use serde_json::{json, Map, Value};

use super::routes::{check_pass_groups, parse_route, Route, TableDefaults};
use super::{err, parse_pass, shown, ConfigError, PassScope};
use crate::route::{canonicalize, match_segments};

/// What a tools/call of one tool costs.
#[derive(Debug, Clone)]
pub enum ToolPrice {
    /// Forwarded untouched.
    Free,
    /// Refused with a JSON-RPC error, never forwarded.
    Deny,
    /// Paid per call: the tool as a `POST {path}` route (its offers, verify policy, rate limits);
    /// its key is `POST {path} tool:{name}`.
    Priced(Box<Route>),
}

impl ToolPrice {
    /// The priced route, if any.
    pub fn route(&self) -> Option<&Route> {
        match self {
            ToolPrice::Priced(r) => Some(r),
            _ => None,
        }
    }
}

/// One MCP server behind the paywall (`MCP[i]`).
#[derive(Debug, Clone)]
pub struct McpServer {
    /// Canonical path of the server's Streamable HTTP endpoint (`/mcp`).
    pub path: String,
    /// Tools priced by name, in name order (a TOML table has no order).
    pub tools: Vec<(String, ToolPrice)>,
    /// What a tool not named in `tools` costs (`default`, "free" when unset).
    pub default: ToolPrice,
}

impl McpServer {
    /// What a call of the tool named `name` costs: its own entry (exact name match), else the
    /// server's default.
    pub fn tool(&self, name: &str) -> &ToolPrice {
        self.tools.iter().find(|(n, _)| n == name).map_or(&self.default, |(_, t)| t)
    }

    /// Whether any call on this server can cost something or be refused.
    pub fn is_priced(&self) -> bool {
        !matches!(self.default, ToolPrice::Free) || self.tools.iter().any(|(_, t)| !matches!(t, ToolPrice::Free))
    }
}

/// The keys of a tool's table.
const TOOL_KEYS: [&str; 6] = ["description", "mimeType", "accepts", "verify", "rateLimit", "pass"];
/// The keys of an `MCP` entry.
const SERVER_KEYS: [&str; 4] = ["path", "tools", "default", "pass"];

/// The pass group of the MCP server at `path` (`"mcp-server /mcp"`): every priced tool of a
/// server with a `pass` is in it, and its pass is scoped to it. No route of `ROUTES` may name it.
pub fn server_pass_group(path: &str) -> String {
    format!("mcp-server {path}")
}

/// `MCP`: its entries (a TOML array of tables, a JSON array, or a JSON string of one); none when
/// unset. Each tool's offers are checked as a route's; a path a priced route also covers is
/// refused (which one would apply would not be obvious).
pub(super) fn parse_mcp(vars: &Map<String, Value>, table: &TableDefaults, routes: &[Route]) -> Result<Vec<McpServer>, ConfigError> {
    let value = match vars.get("MCP") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).or_else(|e| err(format!("MCP is not valid JSON: {e}")))?,
        Some(v) => v.clone(),
    };
    let Value::Array(entries) = value else { return err("MCP must be an array of tables ([[vars.MCP]])") };
    let mut servers: Vec<McpServer> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let server = parse_server(i, entry, table)?;
        if servers.iter().any(|s| match_segments(&s.path) == match_segments(&server.path)) {
            return err(format!("MCP[{i}]: path {} is already an MCP server", shown(&server.path)));
        }
        let segments = match_segments(&server.path);
        if let Some(r) = routes.iter().find(|r| !r.is_free() && r.pattern.matches_path(&segments)) {
            return err(format!("MCP[{i}]: path {} is also covered by the priced route {}: remove it from ROUTES or move the MCP server", shown(&server.path), shown(&r.key)));
        }
        // A route in the server's pass group would be opened by the server's pass, and a route's
        // group pass of that name would open the server's tools.
        let group = server_pass_group(&server.path);
        let names_group = |r: &&Route| r.group.as_deref() == Some(group.as_str()) || r.pass.as_ref().is_some_and(|t| t.scope == PassScope::Group(group.clone()));
        if let Some(r) = routes.iter().find(names_group) {
            return err(format!("route {}: the group {} is the pass group of the MCP server MCP[{i}]: name another group", shown(&r.key), shown(&group)));
        }
        servers.push(server);
    }
    Ok(servers)
}

fn parse_server(i: usize, entry: &Value, table: &TableDefaults) -> Result<McpServer, ConfigError> {
    let Value::Object(obj) = entry else { return err(format!("MCP[{i}] must be a table")) };
    if let Some(k) = obj.keys().find(|k| !SERVER_KEYS.contains(&k.as_str())) {
        return err(format!("MCP[{i}]: unknown key {} (known: path, tools, default, pass)", shown(k)));
    }
    let Some(path) = obj.get("path").and_then(Value::as_str) else { return err(format!("MCP[{i}]: path is required (\"/mcp\")")) };
    match canonicalize(path) {
        Ok(c) if c == path && path.starts_with('/') => {}
        _ => return err(format!("MCP[{i}]: path {} must be a canonical absolute path such as \"/mcp\"", shown(path))),
    }
    let at = format!("MCP[{i}] ({path})");
    let tools = match obj.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(tools)) => {
            let mut out = Vec::with_capacity(tools.len());
            for (name, v) in tools {
                if name.is_empty() {
                    return err(format!("{at}: a tool name is empty"));
                }
                out.push((name.clone(), tool_price(&format!("{at} tools.{}", shown(name)), v, path, Some(name), table)?));
            }
            out
        }
        Some(_) => return err(format!("{at}: tools must be a table of tool name to price")),
    };
    let default = match obj.get("default") {
        None | Some(Value::Null) => ToolPrice::Free,
        Some(v) => tool_price(&format!("{at} default"), v, path, None, table)?,
    };
    let mut server = McpServer { path: path.to_string(), tools, default };
    if let Some(v) = obj.get("pass").filter(|v| !v.is_null()) {
        server_pass(&at, v, &mut server)?;
    }
    Ok(server)
}

/// The server's `pass`: sold by every priced tool's paid call, opening every priced tool (each
/// tool's route joins the server's pass group and sells a pass scoped to it). Each tool's payment
/// options must cover every other tool's price ([`check_pass_groups`]: a pass bought with the
/// cheapest tool never opens a dearer one).
fn server_pass(at: &str, v: &Value, server: &mut McpServer) -> Result<(), ConfigError> {
    if v.get("scope").is_some() {
        return err(format!("{at} pass: `scope` (a server's pass opens every priced tool of the server; for one tool, set pass on the tool)"));
    }
    let mut terms = parse_pass(at, v, &server.path)?;
    let group = server_pass_group(&server.path);
    terms.scope = PassScope::Group(group.clone());
    terms.summary = terms.summary.replacen(&format!(" to {}", server.path), &format!(" to every priced tool of {}", server.path), 1);
    let path = server.path.clone();
    let tools = server.tools.iter_mut().map(|(n, t)| (Some(n.as_str()), t)).chain(std::iter::once((None, &mut server.default)));
    let mut members: Vec<Route> = Vec::new();
    for (name, price) in tools {
        let ToolPrice::Priced(route) = price else { continue };
        if route.pass.is_some() {
            let which = name.map_or("default".to_string(), |n| format!("tools.{}", shown(n)));
            return err(format!("{at}: {which} sells a pass of its own and the server's pass opens every priced tool: keep one of the two"));
        }
        route.pass = Some(terms.clone());
        route.group = Some(group.clone());
        members.push((**route).clone());
    }
    if members.is_empty() {
        return err(format!("{at} pass: no tool of {path} is priced, so no call can buy the pass"));
    }
    check_pass_groups(&members).map_err(|e| ConfigError(format!("{at} pass: it opens every priced tool, so each tool's price must cover every other's: {}", e.0)))
}

/// One tool's price: `"free"`, `"deny"`, a price string, or a table of a route's payment keys.
fn tool_price(at: &str, v: &Value, path: &str, name: Option<&str>, table: &TableDefaults) -> Result<ToolPrice, ConfigError> {
    let mut entry = match v {
        Value::String(s) if s == "free" => return Ok(ToolPrice::Free),
        Value::String(s) if s == "deny" => return Ok(ToolPrice::Deny),
        Value::String(s) => json!({ "price": s }),
        Value::Object(o) => {
            let offer_keys = super::routes::OFFER_KEYS;
            if let Some(k) = o.keys().find(|k| !TOOL_KEYS.contains(&k.as_str()) && !offer_keys.contains(&k.as_str())) {
                let why = match k.as_str() {
                    "group" => "a tool joins no route group: for one pass over every tool, set pass on the server",
                    "settle" => "a tool call settles after the tool answers without an error",
                    "free" => "write the tool's value as \"free\"",
                    _ => "not a key of a tool's price",
                };
                return err(format!("{at}: {} ({why})", shown(k)));
            }
            Value::Object(o.clone())
        }
        _ => return err(format!("{at}: a price (\"$0.01\"), \"free\", \"deny\" or a table with price/amount/accepts")),
    };
    let route_key = format!("POST {path}");
    if let Value::Object(o) = &mut entry {
        o.insert("route".into(), Value::String(route_key.clone()));
    }
    let mut route = parse_route(0, &entry, table).map_err(|e| {
        let prefix = format!("ROUTES[0] ({})", shown(&route_key));
        ConfigError(e.0.replacen(&prefix, at, 1))
    })?;
    if route.accepts.iter().any(|o| o.meter.is_some()) {
        return err(format!("{at}: metered (upto) prices are not offered for MCP tools yet"));
    }
    if let Some(terms) = &mut route.pass {
        let Some(n) = name else {
            return err(format!("{at}: pass (on the default it would be one pass for every tool not named; set pass on the server, or on each tool)"));
        };
        if terms.scope != PassScope::Route {
            return err(format!("{at}: pass scope (a tool's pass opens that tool only; for every tool of the server, set pass on the server)"));
        }
        terms.summary = terms.summary.replacen(&format!(" to {path}"), &format!(" to the tool {}", shown(n)), 1);
    }
    route.key = match name {
        Some(n) => format!("POST {path} tool:{n}"),
        None => format!("POST {path} tool:*"),
    };
    Ok(ToolPrice::Priced(Box::new(route)))
}
