//! sluice: run an LLM-written Python classifier over the rows of one
//! read-only SQL query, inside a sandbox. See ARCHITECTURE.md for the map.
//! The server crate has no `unsafe`: that lives in the sandbox crate.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod cli;
pub mod code;
pub mod config;
pub mod demo;
pub mod environment;
pub mod executor;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod output;
pub mod policy;
pub mod runtime;
pub mod sql;
pub mod status;
