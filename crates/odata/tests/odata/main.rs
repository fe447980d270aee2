//! Behaviour tests for the OData query option parser (one test binary).

mod common;
mod expand;
mod filter;
mod filter_errors;
mod fuzz;
mod query;
mod select_orderby;
