//! Integration tests of layerstore-cli, driving the real `layerstore` binary: the command line
//! against the Go tool's (cli, cli_differential, store_commands, store_differential), and the
//! reliability suites of docs/RELIABILITY.md (crash, concurrency, fault, hostile layers, drivers
//! and store files), with their shared helpers in `suite`. One test binary, one module per concern.

mod check_store;
mod cli;
mod cli_differential;
mod concurrency_suite;
mod crash_suite;
mod fault_suite;
mod hostile_drivers;
mod hostile_layers;
mod hostile_suite;
mod idmapped_changes;
mod pull_command;
mod store_commands;
mod store_differential;
mod suite;
