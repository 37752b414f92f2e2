//! The MIME type a workspace file is served with, from its extension. Unknown types are
//! `application/octet-stream`, so a download never asks a browser to render something unexpected.

const TYPES: &[(&str, &str)] = &[
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("tsv", "text/tab-separated-values; charset=utf-8"),
    ("log", "text/plain; charset=utf-8"),
    ("py", "text/x-python; charset=utf-8"),
    ("rs", "text/x-rust; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("ts", "text/plain; charset=utf-8"),
    ("sh", "text/x-shellscript; charset=utf-8"),
    ("sql", "text/plain; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("json", "application/json"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("toml", "application/toml"),
    ("xml", "application/xml"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("svg", "image/svg+xml"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
];

/// The MIME type of `path` by its extension (case-insensitive).
pub fn mime_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((_, extension)) = name.rsplit_once('.') else {
        return "application/octet-stream";
    };
    let extension = extension.to_ascii_lowercase();
    TYPES
        .iter()
        .find(|(ext, _)| *ext == extension)
        .map_or("application/octet-stream", |(_, mime)| mime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_extensions_and_the_rest() {
        assert_eq!(mime_type("a/b/report.PDF"), "application/pdf");
        assert_eq!(mime_type("notes.md"), "text/markdown; charset=utf-8");
        assert_eq!(mime_type("Makefile"), "application/octet-stream");
        assert_eq!(mime_type("dir.v2/blob"), "application/octet-stream");
        assert_eq!(mime_type("x.unknown"), "application/octet-stream");
    }
}
