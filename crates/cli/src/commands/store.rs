//! The whole store: `status`, `wipe`, `shutdown` and `check`.

use anyhow::Result;
use layerstore::{CheckOptions, Store, StoreOptions};
use serde::Serialize;

use super::{Context, go_error_text};
use crate::config::StoreConfig;
use crate::output::write_json;

pub(super) fn status(ctx: &mut Context<'_>, json: bool) -> Result<i32> {
    let mut lines = vec![
        (
            "Root".to_string(),
            ctx.store.graph_root().display().to_string(),
        ),
        (
            "Run Root".to_string(),
            ctx.store.run_root().display().to_string(),
        ),
        (
            "Driver Name".to_string(),
            ctx.store.driver_name().to_string(),
        ),
        (
            "Driver Options".to_string(),
            format!("[{}]", ctx.config.options.join(" ")),
        ),
    ];
    lines.extend(ctx.store.status());
    if json {
        let pairs: Vec<[&str; 2]> = lines
            .iter()
            .map(|(k, v)| [k.as_str(), v.as_str()])
            .collect();
        write_json(ctx.out, &pairs)?;
    } else {
        for (key, value) in &lines {
            writeln!(ctx.err, "{key}: {value}")?;
        }
    }
    Ok(0)
}

/// `wipe` and `shutdown` answer `""` in JSON on success, `{}` (a Go error value) on failure.
fn json_outcome(
    ctx: &mut Context<'_>,
    json: bool,
    op: &str,
    outcome: Result<(), String>,
) -> Result<i32> {
    match (outcome, json) {
        (Ok(()), true) => {
            writeln!(ctx.out, "\"\"")?;
            Ok(0)
        }
        (Ok(()), false) => Ok(0),
        (Err(_), true) => {
            writeln!(ctx.out, "{{}}")?;
            Ok(1)
        }
        (Err(text), false) => ctx.fail(&format!("{op}: {text}")),
    }
}

pub(super) fn wipe(ctx: &mut Context<'_>, json: bool) -> Result<i32> {
    let outcome = ctx.store.wipe().map_err(|e| go_error_text(&e));
    json_outcome(ctx, json, "wipe", outcome)
}

pub(super) fn shutdown(ctx: &mut Context<'_>, force: bool, json: bool) -> Result<i32> {
    // The store's shutdown also releases the driver (overlay and btrfs undo the private bind
    // mount of their home) and records a write in storage.lock, as Go's does.
    let outcome = ctx.store.shutdown(force).map_err(|e| go_error_text(&e));
    json_outcome(ctx, json, "shutdown", outcome)
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    layer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    container: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    message: String,
    repaired: bool,
}

#[derive(Serialize)]
struct ActionJson {
    action: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct CheckJson<'a> {
    problems: Vec<ProblemJson<'a>>,
    actions: Vec<ActionJson>,
}

/// `check [--repair [--force]] [--quick] [--json]` on the whole Store (layers, images,
/// containers: `layerstore::Store::check` and `repair`): one line per problem, then one per
/// action; exit 1 while problems remain (after a repair: what a check afterwards finds).
/// `--force` lets repair delete damaged containers (Go's `check -f`).
pub(super) fn check(
    ctx: &mut Context<'_>,
    repair: bool,
    force: bool,
    quick: bool,
    json: bool,
) -> Result<i32> {
    let store = ctx.store;
    let options = CheckOptions {
        verify_contents: !quick,
        remove_containers: force,
    };
    let result = if repair {
        store.repair(&options)
    } else {
        store.check(&options)
    };
    let report = match result {
        Ok(report) => report,
        Err(err) => return ctx.fail(&format!("check: {}", layerstore_model::error_chain(&err))),
    };
    if json {
        let problems = report
            .problems
            .iter()
            .map(|p| ProblemJson {
                kind: p.kind(),
                layer: p.layer(),
                image: p.image(),
                container: p.container(),
                path: p.path().map(|path| path.display().to_string()),
                message: p.to_string(),
                repaired: repair && !report.remaining.contains(p),
            })
            .collect();
        let actions = report
            .actions
            .iter()
            .map(|a| ActionJson {
                action: a.repair.to_string(),
                ok: a.error.is_none(),
                error: a.error.clone(),
            })
            .collect();
        write_json(ctx.out, &CheckJson { problems, actions })?;
    } else {
        for problem in &report.problems {
            writeln!(ctx.out, "{}: {problem}", problem.kind())?;
        }
        for action in &report.actions {
            writeln!(ctx.out, "{action}")?;
        }
        if repair {
            for problem in &report.remaining {
                writeln!(ctx.out, "remains: {}: {problem}", problem.kind())?;
            }
        }
    }
    Ok(i32::from(!report.is_clean()))
}

/// For `check --repair`, before the store is opened: a `layers.json` that does not load is
/// rebuilt from disk ([`Store::rebuild_damaged_layers`]), the damaged file kept aside; what
/// was done is said on stderr (stdout carries the check's report). `Err` when the rebuild
/// itself fails.
pub fn rebuild_damaged_layers(config: &StoreConfig) -> Result<()> {
    let mut options =
        StoreOptions::new(&config.graph_root, &config.run_root, config.driver.as_str());
    options.driver_options = config.options.clone();
    let Some(rebuilt) = Store::rebuild_damaged_layers(&options)? else {
        return Ok(());
    };
    let without_diff: Vec<&str> = rebuilt
        .layers
        .iter()
        .filter(|l| !l.diff_recovered)
        .map(|l| l.id.as_str())
        .collect();
    let mut text = format!(
        "repaired: rebuilt {} from disk ({}): {} layer(s); the damaged file is kept as {}; names, compressed digests and big data it held are not recovered",
        rebuilt.path.display(),
        rebuilt.reason,
        rebuilt.layers.len(),
        rebuilt.kept_as.display()
    );
    if !without_diff.is_empty() {
        text.push_str(&format!(
            "; without a diff (no usable tar-split): {}",
            without_diff.join(", ")
        ));
    }
    eprintln!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use layerstore::{LayerOptions, Store};

    use super::*;
    use crate::config::StoreConfig;

    /// Runs `check` with the given flags; answers the exit code and stdout.
    fn run_check(store: &Store, repair: bool, json: bool) -> (i32, String) {
        let config = StoreConfig {
            graph_root: store.graph_root().to_path_buf(),
            run_root: store.run_root().to_path_buf(),
            driver: "vfs".into(),
            options: Vec::new(),
            driver_explicit: true,
            config_file: None,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut ctx = Context {
            store,
            config: &config,
            out: &mut out,
            err: &mut err,
            json_errors: false,
        };
        let code = check(&mut ctx, repair, false, false, json).expect("writes");
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        (code, String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn check_reports_repairs_and_exits_by_what_remains() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(layerstore::StoreOptions::new(
            dir.path().join("graph"),
            dir.path().join("run"),
            "vfs",
        ))
        .expect("open");
        store
            .create_layer(&LayerOptions::new(), Default::default())
            .expect("create");
        assert_eq!(run_check(&store, false, false), (0, String::new()));
        assert_eq!(
            run_check(&store, false, true),
            (0, "{\"problems\":[],\"actions\":[]}\n".to_string())
        );

        let orphan = store.layer_store().layers_dir().join("gone.tar-split.gz");
        std::fs::write(&orphan, b"").expect("orphan");
        let (code, text) = run_check(&store, false, false);
        assert_eq!(code, 1);
        assert_eq!(
            text,
            format!(
                "orphan-tar-split: {}: tar-split without a record\n",
                orphan.display()
            )
        );
        let (code, text) = run_check(&store, false, true);
        assert_eq!(code, 1);
        let report: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(report["problems"][0]["kind"], "orphan-tar-split");
        assert_eq!(report["problems"][0]["path"], orphan.display().to_string());
        assert_eq!(report["problems"][0]["repaired"], false);
        assert_eq!(report["actions"], serde_json::json!([]));

        let (code, text) = run_check(&store, true, true);
        assert_eq!(code, 0, "{text}");
        let report: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(report["problems"][0]["repaired"], true);
        assert_eq!(report["actions"][0]["ok"], true);
        assert!(!orphan.exists());
        assert_eq!(run_check(&store, false, false), (0, String::new()));
    }
}
