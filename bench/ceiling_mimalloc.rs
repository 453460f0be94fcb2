//! The ceiling built with presque's allocator (mimalloc), so the comparison can be
//! read both ways: presque against plain actix-web, and against actix-web given the
//! same allocator.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

include!("ceiling.rs");
