//! Lightbox: a terminal operations console for radiology workflow
//! orchestration, with an embedded durable Amazon States Language engine.

pub mod asl;
pub mod audit;
pub mod backend;
pub mod bench;
pub mod crash;
pub mod duration;
pub mod engine;
pub mod events;
pub mod history;
pub mod model;
pub mod ops;
pub mod outbox;
pub mod phi;
pub mod serve;
pub mod sim;
pub mod store;
pub mod tui;
