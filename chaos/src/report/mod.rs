//! The outputs of a run: the data model, a markdown table, a JSON file and, per scenario, three
//! charts: the fraction of subscribers converged over time, each subscriber's fraction of the
//! wave held over time, and the distribution of exposure windows. Nothing here measures or
//! decides: it presents what the scenarios recorded.

pub mod chart;
pub mod exposure;
pub mod history;
pub mod model;
pub mod table;
pub mod write;
