//! The `clickhouse://` output: rows into a ClickHouse table over its HTTP interface.

pub mod answer;
pub mod target;
