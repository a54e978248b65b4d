//! `mount`, `unmount` and `mounted`.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{Context, go_error_text};
use crate::output::{write_error, write_json};

#[derive(Serialize)]
struct MountResult<'a> {
    id: &'a str,
    mountpoint: String,
    error: String,
}

/// Whether the file system at `path` is mounted read-only.
fn mounted_read_only(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .is_ok_and(|st| st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// `mount [-r] [-o OPTS] [-l LABEL] ID...`. Beyond the Go tool (which ignores `-o`), the
/// comma-separated options of `-o` reach the driver, and `-o ro` gives a read-only mount or
/// an error, never a writable tree (vfs hands out its directory: no read-only mount there).
pub(super) fn mount(
    ctx: &mut Context<'_>,
    label: Option<&str>,
    opt: Option<&str>,
    read_only: bool,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let label = label.unwrap_or_default();
    let options: Vec<String> = opt
        .unwrap_or_default()
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    let want_read_only = options.iter().any(|o| o == "ro");
    let results: Vec<MountResult<'_>> = args
        .iter()
        .map(|arg| {
            // `--ro` mounts an image's top layer, with the options the Go tool passes.
            let mounted = if read_only {
                let mut image_options = vec!["noexec".to_string(), "nosuid".to_string()];
                image_options.extend(options.iter().filter(|o| *o != "ro").cloned());
                ctx.store.mount_image(arg, &image_options, label)
            } else {
                ctx.store
                    .mount_with_options(arg, label, &options)
                    .and_then(|path| {
                        if !want_read_only || mounted_read_only(&path) {
                            return Ok(path);
                        }
                        ctx.store.unmount(arg, false)?;
                        Err(layerstore::Error::Io {
                            action: "mount read-only",
                            path,
                            source: std::io::Error::other(format!(
                                "the {} driver cannot mount a layer read-only",
                                ctx.store.driver_name()
                            )),
                        })
                    })
            };
            match mounted {
                Ok(path) => MountResult {
                    id: arg,
                    mountpoint: path.display().to_string(),
                    error: String::new(),
                },
                Err(err) => MountResult {
                    id: arg,
                    mountpoint: String::new(),
                    error: go_error_text(&err),
                },
            }
        })
        .collect();
    if json {
        write_json(ctx.out, &results)?;
    } else {
        for result in &results {
            if !result.error.is_empty() {
                write_error(
                    ctx.err,
                    ctx.json_errors,
                    &format!("{} while mounting {}", result.error, result.id),
                )?;
            }
            writeln!(ctx.out, "{}", result.mountpoint)?;
        }
    }
    Ok(i32::from(results.iter().any(|r| !r.error.is_empty())))
}

#[derive(Serialize)]
struct IdError<'a> {
    id: &'a str,
    error: String,
}

/// The common end of `unmount` and `mounted`: the results as JSON, or each error on stderr
/// in the Go tool's words (`describe`); exit 1 when any argument failed.
fn finish_id_errors(
    ctx: &mut Context<'_>,
    json: bool,
    results: &[IdError<'_>],
    describe: impl Fn(&IdError<'_>) -> String,
) -> Result<i32> {
    if json {
        write_json(ctx.out, &results)?;
    } else {
        for result in results.iter().filter(|r| !r.error.is_empty()) {
            write_error(ctx.err, ctx.json_errors, &describe(result))?;
        }
    }
    Ok(i32::from(results.iter().any(|r| !r.error.is_empty())))
}

pub(super) fn unmount(
    ctx: &mut Context<'_>,
    force: bool,
    json: bool,
    args: &[String],
) -> Result<i32> {
    let mut results = Vec::new();
    for arg in args {
        match ctx.store.unmount(arg, force) {
            Ok(still_mounted) => {
                if !still_mounted {
                    writeln!(ctx.out, "{arg} mountpoint unmounted")?;
                }
                results.push(IdError {
                    id: arg,
                    error: String::new(),
                });
            }
            // As the Go tool: then as an image; if that fails too, the first error counts.
            Err(err) => {
                let error = match ctx.store.unmount_image(arg, force) {
                    Ok(_) => String::new(),
                    Err(_) => go_error_text(&err),
                };
                results.push(IdError { id: arg, error });
            }
        }
    }
    finish_id_errors(ctx, json, &results, |r| {
        format!("{} while unmounting {}", r.error, r.id)
    })
}

pub(super) fn mounted(ctx: &mut Context<'_>, json: bool, args: &[String]) -> Result<i32> {
    let mut results = Vec::new();
    for arg in args {
        match ctx.store.mounted(arg) {
            Ok(count) => {
                // Printed even with --json, as the Go tool does.
                if count > 0 {
                    writeln!(ctx.out, "{arg} mounted")?;
                }
                results.push(IdError {
                    id: arg,
                    error: String::new(),
                });
            }
            Err(err) => results.push(IdError {
                id: arg,
                error: go_error_text(&err),
            }),
        }
    }
    finish_id_errors(ctx, json, &results, |r| {
        format!("{} checking if {} is mounted", r.error, r.id)
    })
}
