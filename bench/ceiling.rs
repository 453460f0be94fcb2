// The ceiling: the fastest plausible actix-web handler, for `bench/run` to measure
// presque against on the same machine, in the same run, with the same load generator.
// GET answers a 13-byte JSON body; POST reads its body and answers 201 with none.
//
// Usage: `ceiling [HOST:PORT] [WORKERS]` (defaults 127.0.0.1:5100, 1).
// (Plain comments, not `//!`: `ceiling_mimalloc.rs` includes this file.)

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:5100".into());
    let workers: usize = args.next().and_then(|w| w.parse().ok()).unwrap_or(1);
    HttpServer::new(|| {
        App::new().service(
            web::resource("/q/{name}")
                .route(web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("application/json")
                        .body("{\"ceiling\":1}")
                }))
                .route(
                    web::post().to(|_body: web::Bytes| async { HttpResponse::Created().finish() }),
                ),
        )
    })
    .workers(workers)
    .bind(bind)?
    .run()
    .await
}
