//! Where a problem is in the checked `wrangler.toml`: table headers, a variable's line, a route's
//! block and key, and the line and suggestion for one of the parser's messages.

use x402_edge_paywall::config;

pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count() + 1)
}

/// The table header a line opens (`vars`, `vars.ROUTES`, `kv_namespaces`), if it is one.
pub(crate) fn header(line: &str) -> Option<&str> {
    let l = line.trim();
    let l = l.split('#').next().unwrap_or(l).trim();
    l.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")).or_else(|| l.strip_prefix('[').and_then(|h| h.strip_suffix(']'))).map(str::trim)
}

/// Whether `line` assigns `key` (`key = …`, `"key" = …`).
pub(crate) fn assigns(line: &str, key: &str) -> bool {
    let l = line.trim_start();
    let rest = l.strip_prefix(key).or_else(|| l.strip_prefix(&format!("\"{key}\"")));
    rest.is_some_and(|r| r.trim_start().starts_with('='))
}

/// Where things are in the checked file: the tables of the configuration checked are the top
/// level's (`prefix` empty) or `[env.NAME]`'s (`prefix` = `env.NAME.`).
pub(crate) struct Lines<'a> {
    pub(crate) text: &'a str,
    pub(crate) prefix: String,
}

impl Lines<'_> {
    /// The line of variable `name`: its `NAME = …` under `[vars]`, or a `[vars.NAME]` /
    /// `[[vars.NAME]]` header (under `[env.NAME.vars]` … for an environment); 0 if not found.
    pub(crate) fn var_line(&self, name: &str) -> usize {
        let p = &self.prefix;
        let mut in_vars = false;
        for (i, line) in self.text.lines().enumerate() {
            if let Some(h) = header(line) {
                if h == format!("{p}vars.{name}") {
                    return i + 1;
                }
                in_vars = h == format!("{p}vars");
                continue;
            }
            if in_vars && assigns(line, name) {
                return i + 1;
            }
        }
        0
    }

    /// The lines `[first, end)` of route `i`: its `[[vars.ROUTES]]` block; or the `ROUTES = …`
    /// line when the table is written inline.
    pub(crate) fn route_block(&self, i: usize) -> Option<(usize, usize)> {
        let routes = format!("{}vars.ROUTES", self.prefix);
        let lines: Vec<&str> = self.text.lines().collect();
        let starts: Vec<usize> = lines.iter().enumerate().filter(|(_, l)| header(l) == Some(routes.as_str())).map(|(n, _)| n).collect();
        match starts.get(i) {
            Some(&s) => {
                let inner = format!("{routes}.");
                let end = lines.iter().enumerate().skip(s + 1).find(|(_, l)| header(l).is_some_and(|h| !h.starts_with(&inner))).map_or(lines.len(), |(n, _)| n);
                Some((s + 1, end + 1))
            }
            None => {
                let l = self.var_line("ROUTES");
                (l > 0).then_some((l, l + 1))
            }
        }
    }

    /// The line of `key` inside route `i` (`key = …`, or `key =` inside an inline table), else
    /// the route's first line.
    pub(crate) fn route_key_line(&self, i: usize, key: Option<&str>) -> usize {
        let Some((first, end)) = self.route_block(i) else { return 0 };
        let Some(key) = key else { return first };
        let lines: Vec<&str> = self.text.lines().collect();
        for n in first..end.min(lines.len() + 1) {
            let l = lines[n - 1];
            if assigns(l, key) || l.contains(&format!("{{ {key} =")) || l.contains(&format!(", {key} =")) || l.contains(&format!("\"{key}\"")) {
                return n;
            }
        }
        first
    }

    /// The line of the table header `[h]` / `[[h]]` of the checked configuration; 0 if none.
    pub(crate) fn header_line(&self, h: &str) -> usize {
        let h = format!("{}{h}", self.prefix);
        self.text.lines().position(|l| header(l) == Some(h.as_str())).map_or(0, |n| n + 1)
    }
}

/// The first backticked word after `marker` in `message`.
pub(crate) fn quoted_after<'m>(message: &'m str, marker: &str) -> Option<&'m str> {
    let rest = &message[message.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix('`')?;
    rest.split('`').next()
}

/// Every `ROUTES[n]` index the message names, in order.
pub(crate) fn route_indices(message: &str) -> Vec<usize> {
    message.match_indices("ROUTES[").filter_map(|(at, m)| message[at + m.len()..].split(']').next()?.parse().ok()).collect()
}

/// Where a parser error points (line) and what to do about it.
pub(crate) fn locate(at: &Lines, message: &str) -> (usize, String) {
    let text = at.text;
    let meant = quoted_after(message, "did you mean ");
    if let Some(&i) = route_indices(message).first() {
        let key = quoted_after(message, "unknown key ").or_else(|| quoted_after(message, "unknown field "));
        let key = key.or_else(|| message.contains("unknown method").then_some("route"));
        let line = at.route_key_line(i, key);
        let help = match (quoted_after(message, "unknown key ").or_else(|| quoted_after(message, "unknown method ")), meant) {
            (Some(k), Some(m)) => format!("replace `{k}` with `{m}`"),
            _ if message.contains("matches every request") => "list the dearer route first, or narrow the earlier pattern".into(),
            _ => "fix this route; its keys are described in README \"Configuration\"".into(),
        };
        return (line, help);
    }
    if let Some(key) = message.strip_prefix("route `").and_then(|r| r.split('`').next()) {
        // A pass-group error names the route by its key.
        let routes = text.lines().enumerate().find(|(_, l)| assigns(l, "route") && l.contains(&format!("\"{key}\""))).map_or(0, |(n, _)| n + 1);
        return (routes, "fix the route's group or its pass scope".into());
    }
    let name = config::KNOWN_NAMES
        .iter()
        .copied()
        .filter_map(|v| message.find(v).map(|at| (at, v)))
        .min_by_key(|(at, v)| (*at, usize::MAX - v.len()))
        .map(|(_, v)| v);
    let priced_name = quoted_after(message, "").filter(|_| message.contains("looks like a price"));
    let help = match (name, priced_name) {
        (_, Some(p)) => format!("set prices on routes ([[vars.ROUTES]] with route = \"GET /path\" and price = \"$0.01\"), or rename `{p}`"),
        (Some("PAY_TO"), _) => "set PAY_TO to the address that receives payments: 0x followed by 40 hex digits".into(),
        (Some(v), _) => format!("fix {v}; it is described in README \"Configuration\""),
        (None, _) => "see README \"Configuration\"".into(),
    };
    let line = match priced_name {
        Some(p) => at.var_line(p),
        None => name.map_or(0, |v| at.var_line(v)),
    };
    (line, help)
}
