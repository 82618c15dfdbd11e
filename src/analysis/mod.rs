//! Dataset-level analyses: a model's activations over a dataset ([`activations`]), what
//! each unit responds to ([`units`]), t-SNE embeddings ([`embedding`]) and units against
//! random directions of the same space ([`directions`]), and what input each unit wants to
//! see ([`featurevis`]). Numbers only: pages word them.

pub mod activations;
pub mod directions;
pub mod embedding;
pub mod featurevis;
pub mod units;
