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
//! `rateLimit`): it is parsed as a `POST {path}` route by the same code as `ROUTES`, so prices,
//! assets, networks and recipients follow the one `accepts` model. Tools are matched by their
//! exact name (byte for byte, as `@modelcontextprotocol/sdk`'s `McpServer` looks them up).
//! Not yet offered for tools: passes, `settle = "before"` and metered (`upto`) prices, refused here
//! with a message.

use serde_json::{json, Map, Value};

use super::routes::{parse_route, Route, TableDefaults};
use super::{err, shown, ConfigError};
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
const TOOL_KEYS: [&str; 5] = ["description", "mimeType", "accepts", "verify", "rateLimit"];
/// The keys of an `MCP` entry.
const SERVER_KEYS: [&str; 3] = ["path", "tools", "default"];

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
        servers.push(server);
    }
    Ok(servers)
}

fn parse_server(i: usize, entry: &Value, table: &TableDefaults) -> Result<McpServer, ConfigError> {
    let Value::Object(obj) = entry else { return err(format!("MCP[{i}] must be a table")) };
    if let Some(k) = obj.keys().find(|k| !SERVER_KEYS.contains(&k.as_str())) {
        return err(format!("MCP[{i}]: unknown key {} (known: path, tools, default)", shown(k)));
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
    Ok(McpServer { path: path.to_string(), tools, default })
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
                    "pass" | "group" => "passes are not offered for MCP tools yet",
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
    route.key = match name {
        Some(n) => format!("POST {path} tool:{n}"),
        None => format!("POST {path} tool:*"),
    };
    Ok(ToolPrice::Priced(Box::new(route)))
}
