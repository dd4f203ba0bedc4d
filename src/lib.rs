//! sluice: run an LLM-written Python classifier over the rows of one
//! read-only SQL query, inside a sandbox. See ARCHITECTURE.md for the map.

pub mod api;
pub mod audit;
pub mod cli;
pub mod code;
pub mod config;
pub mod demo;
pub mod environment;
pub mod executor;
pub mod jail;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod runtime;
pub mod server;
pub mod service;
pub mod sql;
pub mod tools;
pub mod ui;
pub mod verdict;
