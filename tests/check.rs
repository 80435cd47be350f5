//! `x402-check` (src/bin/x402-check/), run as a user runs it: on the shipped wrangler.toml
//! (clean) and on broken fixtures in tests/data/check/, asserting each problem's printed line,
//! the exit status, and the price table.

use std::path::PathBuf;
use std::process::Command;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/check").join(name)
}

/// Runs the check on `path`: (exit status, stdout).
fn run(path: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_x402-check")).arg(path).output().expect("x402-check runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The 1-based line of the first line of fixture `name` containing `needle`.
fn line_of(name: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(data(name)).unwrap();
    text.lines().position(|l| l.contains(needle)).map(|n| n + 1).unwrap_or_else(|| panic!("{needle} in {name}"))
}

/// Asserts that the report on fixture `name` has a `LEVEL` at the line holding `needle`, whose
/// message contains `says`, followed by a `help:` line; returns the report.
fn reports(name: &str, level: &str, needle: &str, says: &str) -> String {
    let (_, out) = run(&data(name));
    let prefix = format!("{}:{}: {level}: ", data(name).display(), line_of(name, needle));
    let mut lines = out.lines();
    let found = lines.by_ref().find(|l| l.starts_with(&prefix) && l.contains(says));
    assert!(found.is_some(), "{prefix}…{says} in:\n{out}");
    assert!(lines.next().is_some_and(|h| h.starts_with("  help: ")), "a suggestion follows:\n{out}");
    out
}

fn errors(out: &str) -> usize {
    out.lines().filter(|l| l.contains(": error: ")).count()
}

#[test]
fn the_shipped_wrangler_toml_is_clean_and_its_routes_are_listed() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wrangler.toml");
    let (code, out) = run(&path);
    assert_eq!(code, 0, "{out}");
    assert_eq!(errors(&out), 0, "{out}");
    // Local-only values are warned about, with their lines.
    let text = std::fs::read_to_string(&path).unwrap();
    let line = |p: &str| text.lines().position(|l| l.starts_with(p)).unwrap() + 1;
    assert!(out.contains(&format!("wrangler.toml:{}: warning: ORIGIN_URL `http://127.0.0.1:8788` is a loopback address", line("ORIGIN_URL ="))), "{out}");
    assert!(out.contains(&format!("wrangler.toml:{}: warning: FACILITATOR_URL `http://127.0.0.1:4022` is a loopback address", line("FACILITATOR_URL ="))), "{out}");
    assert!(out.contains(&format!("wrangler.toml:{}: warning: the PASSES KV namespace id `00000000000000000000000000000000` is a placeholder", line("id = \"0000"))), "{out}");
    assert!(out.contains("  priced GET /weather: 0.01 USDC (10000 atomic units of 0x036CbD53842c5426634e7929541eC2318f3dCF7e) on eip155:84532, payTo 0x90F79bf6EB2c4f870365E785982E1f101E93b906\n"), "{out}");
    assert!(out.contains("  free   GET /premium/sample: proxied without payment\n"), "{out}");
    assert!(out.contains("  priced GET /premium/*: 0.05 USDC"), "{out}");
    assert!(out.ends_with("0 errors, 3 warnings\n"), "{out}");
}

#[test]
fn a_clean_fixture_has_no_problem() {
    let (code, out) = run(&data("clean.toml"));
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("0 errors, 0 warnings\n"), "{out}");
}

#[test]
fn a_misspelt_route_table_is_an_error_at_its_header() {
    let out = reports("routs.toml", "error", "[[vars.ROUTS]]", "unknown variable `ROUTS`; did you mean `ROUTES`?");
    assert!(out.contains("  help: rename `ROUTS` to `ROUTES`"), "{out}");
    assert_eq!(run(&data("routs.toml")).0, 1);
}

#[test]
fn a_misspelt_pay_to_is_an_error() {
    reports("pay_t0.toml", "error", "PAY_T0 =", "unknown variable `PAY_T0`; did you mean `PAY_TO`?");
}

#[test]
fn a_variable_in_the_wrong_case_is_an_error() {
    reports("routes_lower_case.toml", "error", "[[vars.routes]]", "unknown variable `routes`; did you mean `ROUTES`?");
}

#[test]
fn a_misspelt_route_key_is_named_with_the_closest_known_one() {
    let out = reports("pirce.toml", "error", "pirce =", "unknown key `pirce` in ROUTES[0] (`GET /v1/quote`); did you mean `price`?");
    assert!(out.contains("  help: replace `pirce` with `price`"), "{out}");
    // The broken route is not listed as free: it is left out of the table.
    assert!(out.contains("routes (those with errors left out):") && !out.contains("GET /v1/quote: proxied"), "{out}");
}

#[test]
fn a_misspelt_payment_option_key_is_named() {
    reports("offer_key.toml", "error", "prce =", "unknown key `prce` in ROUTES[0] (`GET /v1/quote`) accepts[1]; did you mean `price`?");
}

#[test]
fn a_misspelt_method_is_an_error_at_the_route_line() {
    let out = reports("gte.toml", "error", "route = \"GTE", "unknown method `GTE`; did you mean `GET`?");
    assert!(out.contains("  help: replace `GTE` with `GET`"), "{out}");
}

#[test]
fn a_price_variable_without_a_priced_route_is_an_error() {
    reports("price_var.toml", "error", "PRICE =", "`PRICE` looks like a price, but no route in ROUTES is priced");
}

#[test]
fn a_bad_pay_to_is_blamed_on_pay_to() {
    let out = reports("bad_pay_to.toml", "error", "PAY_TO =", "PAY_TO `0x90F79bf6EB2c4f870365E785982E1f101E93b9` is not a 0x-prefixed 20-byte address");
    assert!(!out.contains("ROUTES[0]"), "not blamed on a route: {out}");
}

#[test]
fn loopback_urls_are_warnings_not_errors() {
    reports("loopback.toml", "warning", "ORIGIN_URL =", "ORIGIN_URL `http://127.0.0.1:8788` is a loopback address");
    reports("loopback.toml", "warning", "FACILITATOR_URL =", "FACILITATOR_URL `http://localhost:4022` is a loopback address");
    assert_eq!(run(&data("loopback.toml")).0, 0, "fine for local use");
}

#[test]
fn the_all_zero_kv_id_is_a_warning() {
    reports("kv_placeholder.toml", "warning", "id = \"0000", "the PASSES KV namespace id `00000000000000000000000000000000` is a placeholder");
}

#[test]
fn missing_bindings_are_errors() {
    let (code, out) = run(&data("missing_ledger.toml"));
    assert_eq!(code, 1);
    assert!(out.contains("missing_ledger.toml: error: priced routes and MCP tools need the payment ledger, but the Durable Object binding LEDGER is missing"), "{out}");
    reports("missing_rate_limit.toml", "error", "RATE_LIMITS =", "rate limit binding `CHALLENGES` is missing");
}

#[test]
fn an_mcp_only_configuration_needs_the_same_bindings_as_priced_routes() {
    // No priced route at all: only MCP tools are priced, one sells a pass, one names a limiter.
    let (code, out) = run(&data("mcp_missing_bindings.toml"));
    assert_eq!(code, 1, "{out}");
    for says in [
        "priced routes and MCP tools need the payment ledger, but the Durable Object binding LEDGER is missing",
        "a route or MCP tool sells a pass but the KV namespace binding PASSES is missing",
    ] {
        assert!(out.contains(&format!("mcp_missing_bindings.toml: error: {says}")), "{says} in:\n{out}");
    }
    reports("mcp_missing_bindings.toml", "error", "\"SEARCHES\"", "rate limit binding `SEARCHES` is missing");
}

#[test]
fn plain_http_to_a_public_origin_is_an_error() {
    reports("plain_http_origin.toml", "error", "ORIGIN_URL =", "ORIGIN_URL `http://api.example.com` uses http://");
}

#[test]
fn a_free_route_that_shadows_a_priced_one_is_an_error() {
    reports("shadowed.toml", "error", "[[vars.ROUTES]]", "ROUTES[0] (`GET /v1/*`) matches every request ROUTES[1] (`GET /v1/quote`) matches and is free");
}

#[test]
fn every_problem_is_reported_in_one_run() {
    let out = reports("many.toml", "error", "pirce =", "unknown key `pirce`");
    reports("many.toml", "error", "route = \"GTE", "unknown method `GTE`");
    reports("many.toml", "error", "[[vars.ROUTS]]", "unknown variable `ROUTS`");
    assert_eq!(errors(&out), 3, "{out}");
    assert!(out.ends_with("3 errors, 0 warnings\n"), "{out}");
}

#[test]
fn secrets_are_read_from_dev_vars_and_only_named() {
    let (code, out) = run(&data("with-secrets/wrangler.toml"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("secrets from ") && out.contains(".dev.vars: SIGN_IN_SECRET, ADMIN_TOKEN"), "{out}");
    assert!(!out.contains("dev-only"), "no secret value is printed: {out}");
    // Without a .dev.vars, a secret the configuration needs is a reminder, not an error.
    let (code, out) = run(&data("sign_in_without_secret.toml"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": warning: SIGN_IN_SECRET is not set") && out.contains("help: make sure the secret is set for the deployment: `wrangler secret put SIGN_IN_SECRET`"), "{out}");
}

#[test]
fn the_payment_context_key_is_checked_and_its_id_named() {
    let (code, out) = run(&data("context-key/wrangler.toml"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("payment context: paid requests carry X402-Payment-Context signed with key kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k; public key at /.well-known/x402/jwks.json"), "{out}");
    let (code, out) = run(&data("context-key-bad/wrangler.toml"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(": error: PAYMENT_CONTEXT_KEY's \"d\" decodes to 16 bytes; an Ed25519 key's is 32"), "{out}");
    assert!(!out.contains("c2VjcmV0"), "the key is never printed: {out}");
}

#[test]
fn an_unreadable_or_invalid_file_exits_2() {
    assert_eq!(run(&data("no-such-file.toml")).0, 2);
    let dir = std::env::temp_dir().join(format!("x402-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("wrangler.toml");
    std::fs::write(&bad, "[vars]\nPAY_TO = \n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_x402-check")).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2: not valid TOML"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs the check on `path` for environment `env` (`--env env`): (exit status, stdout, stderr).
fn run_env(path: &std::path::Path, env: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_x402-check")).args(["--env", env]).arg(path).output().expect("x402-check runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_environment_is_checked_as_wrangler_deploys_it_vars_and_bindings_its_own_migrations_inherited() {
    let path = data("env.toml");
    // The top level alone is clean; its environments are not read.
    let (code, out) = run(&path);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  priced GET /v1/quote: 0.01 USDC") && !out.contains("/v1/report"), "{out}");
    assert!(out.ends_with("0 errors, 0 warnings\n"), "{out}");

    // Production: its own route only (vars are not inherited), its LEDGER binding, and the top
    // level's SQLite migration (migrations are inherited), so no problem.
    let (code, out, _) = run_env(&path, "production");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  priced GET /v1/report: 0.25 USDC"), "{out}");
    assert!(!out.contains("/v1/quote"), "the top level's route is not inherited: {out}");
    assert!(out.ends_with("0 errors, 0 warnings\n"), "{out}");

    // Staging: the misspelt variable is named at its line under [env.staging.vars], the route
    // that lost its payTo at its line under [[env.staging.vars.ROUTES]], and the top level's
    // Durable Object binding, which staging does not inherit, is warned about.
    let (code, out, _) = run_env(&path, "staging");
    assert_eq!(code, 1, "{out}");
    let file = path.display();
    let staging_line = |needle: &str| {
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.lines().position(|l| l.starts_with("[env.staging")).unwrap();
        text.lines().skip(start).position(|l| l.contains(needle)).unwrap() + start + 1
    };
    assert!(out.contains(&format!("{file}:{}: error: unknown variable `PAY_T0`; did you mean `PAY_TO`?", staging_line("PAY_T0 ="))), "{out}");
    assert!(out.contains(&format!("{file}:{}: error: ROUTES[0] (`GET /v1/quote`): no payTo and PAY_TO is not set", staging_line("[[env.staging.vars.ROUTES]]"))), "{out}");
    assert!(
        out.contains(&format!("{file}:{}: warning: `durable_objects` is set at the top level but not in [env.staging]", staging_line("[env.staging.vars]"))),
        "{out}"
    );

    // An environment the file does not define cannot be checked.
    let (code, _, err) = run_env(&path, "nope");
    assert_eq!(code, 2);
    assert!(err.contains("no [env.nope] table: the environments defined are production, staging"), "{err}");
}

/// The `wrangler.toml` examples of README.md and docs/migration.md (each fenced `toml` block
/// with a `[vars]` table) pass the check once the bindings the page says to add are there and
/// the placeholder `0xYourAddress` is an address: a user copying them gets no error.
#[test]
fn the_configuration_examples_in_the_docs_pass_the_check() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bindings = "\n[[durable_objects.bindings]]\nname = \"LEDGER\"\nclass_name = \"PaymentLedger\"\n\n[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"PaymentLedger\"]\n\n[[kv_namespaces]]\nbinding = \"PASSES\"\nid = \"5d4c1b7e2f9a4c3e8b6d0a1f2e3c4b5a\"\n";
    let mut checked = 0;
    for page in ["README.md", "docs/migration.md"] {
        let text = std::fs::read_to_string(root.join(page)).unwrap();
        for (i, block) in text.split("```toml\n").skip(1).filter_map(|rest| rest.split("```").next()).enumerate() {
            if !block.contains("[vars]") {
                continue;
            }
            let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("example-{}-{i}.toml", page.replace('/', "-")));
            let toml = format!("name = \"example\"\nmain = \"build/index.js\"\ncompatibility_date = \"2025-01-01\"\n\n{}{bindings}", block.replace("0xYourAddress", "0x90F79bf6EB2c4f870365E785982E1f101E93b906"));
            std::fs::write(&file, toml).unwrap();
            let (code, out) = run(&file);
            assert_eq!((code, errors(&out)), (0, 0), "{page}, example {i}:\n{out}");
            assert!(out.contains("priced "), "{page}, example {i} prices a route:\n{out}");
            checked += 1;
        }
    }
    assert!(checked >= 2, "the README's and the migration page's examples were found ({checked})");
}
