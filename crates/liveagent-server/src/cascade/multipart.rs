//! A small `multipart/form-data` reader for the fake STT uploads: fields by name, files
//! with their filename and content type. Bracketed names (`include[]`) are kept as sent.

use actix_web::HttpRequest;

/// One part of a form.
#[derive(Debug)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// A parsed form.
#[derive(Debug, Default)]
pub(crate) struct Form {
    pub parts: Vec<Part>,
}

impl Form {
    /// The text of the first field called `name`.
    pub fn text(&self, name: &str) -> Option<String> {
        self.parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    }

    /// The first file part called `name`.
    pub fn file(&self, name: &str) -> Option<&Part> {
        self.parts
            .iter()
            .find(|p| p.name == name && p.filename.is_some())
    }
}

/// Parses the request body as `multipart/form-data`.
pub(crate) fn parse(req: &HttpRequest, body: &[u8]) -> Result<Form, String> {
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(format!("expected multipart/form-data, got {ctype:?}"));
    }
    let boundary = ctype
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_owned())
        .ok_or("multipart body without a boundary")?;
    let delim = format!("--{boundary}").into_bytes();
    let mut form = Form::default();
    let mut pos = find(body, &delim, 0).ok_or("no multipart boundary in the body")?;
    loop {
        pos += delim.len();
        if body[pos..].starts_with(b"--") {
            return Ok(form);
        }
        pos += skip_crlf(&body[pos..]);
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("multipart part without headers")?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).into_owned();
        let data_start = head_end + 4;
        let next = find(body, &delim, data_start).ok_or("unterminated multipart part")?;
        let mut data_end = next;
        if body[..data_end].ends_with(b"\r\n") {
            data_end -= 2;
        }
        let mut name = None;
        let mut filename = None;
        for line in head.lines() {
            if line
                .to_ascii_lowercase()
                .starts_with("content-disposition:")
            {
                name = param(line, "name");
                filename = param(line, "filename");
            }
        }
        form.parts.push(Part {
            name: name.ok_or("multipart part without a name")?,
            filename,
            data: body[data_start..data_end].to_vec(),
        });
        pos = next;
    }
}

fn skip_crlf(b: &[u8]) -> usize {
    if b.starts_with(b"\r\n") {
        2
    } else {
        0
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn param(line: &str, key: &str) -> Option<String> {
    line.split(';').find_map(|p| {
        let p = p.trim();
        let v = p.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim_matches('"').to_owned())
    })
}
