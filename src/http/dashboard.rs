//! `/` and `/dashboard/FILE`: the dashboard, a single page whose HTML, CSS and script
//! are compiled into the binary (no CDN, no build step). The page holds no data: its
//! script reads the JSON routes (`/overview`, `/jobs/NAME`, `/info`, ...), so it
//! follows the same authentication rules as any other client.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use super::input::{query, NoQuery};
use crate::http::error::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const PAGE: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    bytes: include_bytes!("../../assets/dashboard/index.html"),
};

/// What `/dashboard/FILE` serves.
const FILES: &[Asset] = &[
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/dashboard/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/dashboard/app.css"),
    },
];

/// A strong validator per file: FNV-1a of its bytes. The files change only with the
/// binary, so a browser may keep them and revalidate (`no-cache`) for a 304.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(&PAGE)
        .chain(FILES)
        .map(|asset| format!("\"{:016x}\"", fnv1a(asset.bytes)))
        .collect()
});

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The answer for one asset: 304 when the client's `If-None-Match` names its ETag.
fn serve(req: &HttpRequest, asset: &Asset, etag: &str) -> HttpResponse {
    let matches = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut answer = if matches {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    answer
        .insert_header((header::ETAG, etag.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if matches {
        return answer.finish();
    }
    answer
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        // The page loads nothing from elsewhere and runs no inline script.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ))
        .body(asset.bytes)
}

/// `GET /`: the page.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "dashboard",
    summary = "The dashboard (HTML)",
    tag = "dashboard",
    responses((status = 200, description = "The dashboard: an HTML page", content_type = "text/html")),
)]
pub async fn page(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    Ok(serve(&req, &PAGE, &ETAGS[0]))
}

/// `GET /dashboard/FILE`: the page's script and style sheet.
#[utoipa::path(
    get,
    path = "/dashboard/{file}",
    operation_id = "dashboard_file",
    summary = "The dashboard's script or style sheet",
    description = "The same bytes as in the binary; with a strong ETag (If-None-Match answers 304).",
    tag = "dashboard",
    params(("file" = String, Path, description = "app.js or app.css", example = "app.js")),
    responses(
        (status = 200, description = "The file", content_type = "text/javascript"),
        (status = 304, description = "Not modified (If-None-Match matched)"),
        (status = 404, description = "No such file", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn file(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let NoQuery {} = query(&req)?;
    let name = req.match_info().get("file").unwrap_or_default();
    let (i, asset) = FILES
        .iter()
        .enumerate()
        .find(|(_, asset)| asset.name == name)
        .ok_or(ApiError::NotFound)?;
    Ok(serve(&req, asset, &ETAGS[i + 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_its_own_etag() {
        assert_eq!(ETAGS.len(), FILES.len() + 1);
        let mut tags = ETAGS.clone();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ETAGS.len());
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
