//! The outputs of a run: the data model, a markdown table, a JSON file and a chart of the
//! fraction of subscribers converged over time. Nothing here measures or decides: it presents
//! what the scenarios recorded.

pub mod chart;
pub mod history;
pub mod model;
pub mod table;
pub mod write;
