//! Downloads (issue #5, part 10; docs/downloads.md): an attachment's bytes,
//! a message as `.eml` (with or without its attachments), attachments as a
//! zip, and the PDF transcript of an interaction.
//!
//! Who may: whoever may read the interaction (`access::check(.., Read)`);
//! an upload not yet used in a message only its uploader. Attachment bytes
//! (files, zips, `.eml` with attachments, transcripts with attachments) also
//! need the caller's role to be in `[permissions] download_attachments`.
//!
//! Files are served as `attachment` with `X-Content-Type-Options: nosniff`
//! and a sandboxing CSP; only raster images may be shown `inline` (never
//! SVG or HTML, which could run script in our origin). File names reach the
//! `Content-Disposition` header only through [`content_disposition`], which
//! percent-encodes them (RFC 6266 / RFC 5987), so no name can add a header.
//!
//! Zips and PDFs are built on the blocking pool (`web::block`): deflating
//! 15 MB or laying out hundreds of pages would otherwise hold an HTTP
//! worker thread, and every request queued behind it, for that long.

use std::collections::{HashMap, HashSet};
use std::io::{Cursor, Write};

use actix_web::http::header;
use actix_web::{HttpResponse, get, web};
use mail_parser::{MessageParser, MimeHeaders, PartType};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use super::access::{Act, check};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::state::AppState;
use super::transcript::{self, Entry, Picture, PictureKind, Transcript};
use super::views::interaction_view;
use crate::domain::{AgentId, AttachmentId, Direction, InteractionId, MessageId, MessageKind};
use crate::mail::Mailbox;
use crate::store::{AttachmentMeta, Interaction, Store, StoreError, StoredMessage};

/// This module's part of the OpenAPI document (merged in `openapi.rs`).
#[derive(OpenApi)]
#[openapi(paths(
    download_attachment,
    message_raw,
    message_zip,
    interaction_zip,
    transcript_pdf
))]
pub struct Doc;

/// Register this module's routes (under `/api/v1`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(download_attachment)
        .service(message_raw)
        .service(message_zip)
        .service(interaction_zip)
        .service(transcript_pdf);
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct InlineQuery {
    /// `true`: a raster image (`image/*` but SVG) is served `inline`, for a
    /// preview; every other type is always an `attachment`.
    pub inline: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct AttachmentsQuery {
    /// Include the attachments (`.eml`: default `true`; transcript: default
    /// `false`, `true` appends PNG and JPEG images as pages).
    pub attachments: Option<bool>,
}

// ---- handlers ------------------------------------------------------------------------

/// An attachment's bytes, with its Content-Type and a Content-Disposition.
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "downloads", security(("bearer" = [])),
    params(("id" = String, Path), InlineQuery),
    responses((status = 200, description = "the file", content_type = "application/octet-stream"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/attachments/{id}")]
pub async fn download_attachment(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<AttachmentId>,
    query: web::Query<InlineQuery>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    may_download(&state, &caller)?;
    let place = store.attachment_place(id.into_inner()).await?;
    match place.interaction {
        Some(i) => {
            let interaction = store.interaction(i).await?;
            check(store, &caller, &interaction, Act::Read).await?;
        }
        // An upload not yet sent is its uploader's alone; to anyone else it
        // does not exist.
        None if place.uploaded_by == Some(caller.agent.id) => {}
        None => return Err(ApiError::not_found("attachment not found")),
    }
    let (meta, bytes) = store.attachment(place.meta.id).await?;
    let content_type = safe_content_type(&meta.content_type);
    let inline = query.inline == Some(true) && previewable(&content_type);
    Ok(file_response(
        &content_type,
        &content_disposition(if inline { "inline" } else { "attachment" }, &meta.filename),
        bytes,
    ))
}

/// The message as an `.eml` file (`message/rfc822`).
#[utoipa::path(get, path = "/api/v1/messages/{id}/raw", tag = "downloads", security(("bearer" = [])),
    params(("id" = String, Path), AttachmentsQuery),
    responses((status = 200, description = "the mail", content_type = "message/rfc822"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown, or a note (notes are never mail)")))]
#[get("/messages/{id}/raw")]
pub async fn message_raw(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<MessageId>,
    query: web::Query<AttachmentsQuery>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let id = id.into_inner();
    let interaction = store.message_interaction(id).await?;
    let (_, message) = readable_message(store, &caller, interaction, id).await?;
    if matches!(
        message.kind,
        MessageKind::Note | MessageKind::SupervisorNote
    ) {
        return Err(ApiError::not_found(
            "notes are internal and never mail: they have no .eml (the transcript shows them)",
        ));
    }
    let with_attachments = query.attachments.unwrap_or(true);
    if with_attachments && !message.attachments.is_empty() {
        may_download(&state, &caller).map_err(|_| {
            ApiError::forbidden(
                "your role may not download attachments; ask for ?attachments=false",
            )
        })?;
    }
    // Read only now, after the checks: a source may be tens of megabytes.
    let source = store.message_source(id).await?;
    let eml = match (source.raw, with_attachments) {
        (Some(raw), true) => raw,
        (Some(raw), false) => web::block(move || strip_attachments(&raw))
            .await
            .map_err(ApiError::internal)?,
        (None, _) => {
            let mut files = Vec::new();
            if with_attachments {
                for a in &message.attachments {
                    files.push(store.attachment(a.id).await?);
                }
            }
            build_eml(&message, files)?
        }
    };
    let stem = if message.subject.trim().is_empty() {
        format!("message-{}", message.id)
    } else {
        message.subject.clone()
    };
    Ok(file_response(
        "message/rfc822",
        &content_disposition("attachment", &format!("{stem}.eml")),
        eml,
    ))
}

/// The attachments of one message as a zip.
#[utoipa::path(get, path = "/api/v1/messages/{id}/attachments.zip", tag = "downloads", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "a zip", content_type = "application/zip"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown, or no attachments")))]
#[get("/messages/{id}/attachments.zip")]
pub async fn message_zip(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<MessageId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let id = id.into_inner();
    may_download(&state, &caller)?;
    let interaction = store.message_interaction(id).await?;
    let (_, message) = readable_message(store, &caller, interaction, id).await?;
    let zip = zip_attachments(store, &message.attachments).await?;
    Ok(file_response(
        "application/zip",
        &content_disposition("attachment", &format!("message-{id}-attachments.zip")),
        zip,
    ))
}

/// Every attachment of an interaction (all its messages and notes) as one zip.
#[utoipa::path(get, path = "/api/v1/interactions/{id}/attachments.zip", tag = "downloads", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "a zip", content_type = "application/zip"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown, or no attachments")))]
#[get("/interactions/{id}/attachments.zip")]
pub async fn interaction_zip(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    may_download(&state, &caller)?;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Read).await?;
    let files: Vec<AttachmentMeta> = store
        .messages(interaction.id)
        .await?
        .into_iter()
        .flat_map(|m| m.attachments)
        .collect();
    let zip = zip_attachments(store, &files).await?;
    Ok(file_response(
        "application/zip",
        &content_disposition(
            "attachment",
            &format!("interaction-{}-attachments.zip", interaction.id),
        ),
        zip,
    ))
}

/// The interaction as a PDF: its header, every message and note in order
/// (notes marked INTERNAL), each message's attachments listed; with
/// `attachments=true`, PNG and JPEG attachments appended as pages.
#[utoipa::path(get, path = "/api/v1/interactions/{id}/transcript.pdf", tag = "downloads", security(("bearer" = [])),
    params(("id" = String, Path), AttachmentsQuery),
    responses((status = 200, description = "the PDF", content_type = "application/pdf"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/interactions/{id}/transcript.pdf")]
pub async fn transcript_pdf(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    query: web::Query<AttachmentsQuery>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Read).await?;
    let with_images = query.attachments.unwrap_or(false);
    if with_images {
        may_download(&state, &caller)?;
    }
    let (doc, pictures) = gather_transcript(store, &interaction, with_images).await?;
    let pdf = web::block(move || transcript::render(&doc, &pictures))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(file_response(
        "application/pdf",
        &content_disposition(
            "attachment",
            &format!("interaction-{}-transcript.pdf", interaction.id),
        ),
        pdf,
    ))
}

// ---- access --------------------------------------------------------------------------

/// 403 unless the caller's role may download attachments (config).
fn may_download(state: &AppState, caller: &Caller) -> ApiResult<()> {
    if state
        .settings
        .permissions
        .may_download_attachments(caller.agent.role)
    {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "the {} role may not download attachments",
            caller.agent.role
        )))
    }
}

/// The interaction (checked for `Read`) and the message in it.
async fn readable_message(
    store: &Store,
    caller: &Caller,
    interaction: InteractionId,
    id: MessageId,
) -> ApiResult<(Interaction, StoredMessage)> {
    let interaction = store.interaction(interaction).await?;
    check(store, caller, &interaction, Act::Read).await?;
    let message = store
        .messages(interaction.id)
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ApiError::not_found("message not found"))?;
    Ok((interaction, message))
}

// ---- headers -------------------------------------------------------------------------

fn file_response(content_type: &str, disposition: &str, body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type.to_string()))
        .insert_header((header::CONTENT_DISPOSITION, disposition.to_string()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Should a browser render it anyway, it runs nothing and loads nothing.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        ))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .body(body)
}

/// A stored content type if it is a plain `type/subtype` of token
/// characters (parameters dropped), else `application/octet-stream`.
pub fn safe_content_type(stored: &str) -> String {
    let essence = stored
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((t, sub)) if token(t) && token(sub) => essence,
        _ => "application/octet-stream".to_string(),
    }
}

/// Raster images only: SVG can carry script, HTML is never shown inline.
fn previewable(content_type: &str) -> bool {
    content_type.starts_with("image/") && !content_type.contains("svg")
}

/// A file name made safe for a header and a file system: no control
/// characters, no path separators, not empty, at most 200 characters.
pub fn safe_filename(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' => '_',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.').trim();
    let short: String = trimmed.chars().take(200).collect();
    if short.is_empty() {
        "attachment".to_string()
    } else {
        short
    }
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded`
/// (RFC 6266 with RFC 5987's encoding): the quoted fallback is ASCII with
/// anything unsafe replaced by `_`, the encoded form keeps the full name.
/// Neither can contain CR, LF or a quote, so no name can add a header.
pub fn content_disposition(kind: &str, filename: &str) -> String {
    let name = safe_filename(filename);
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

// ---- .eml ----------------------------------------------------------------------------

/// The stored source without its attachment parts.
///
/// Why splice the source rather than rebuild the mail: the headers
/// (Received, DKIM, Message-ID, every custom field) and the text and HTML
/// bodies stay byte for byte as they arrived, and only the attachment parts
/// are cut out of their multiparts, each from its opening boundary line to
/// the next boundary line of the same multipart. A mail whose whole body is
/// one attachment keeps its headers and gets a short text body saying so.
/// Whatever mail-parser cannot read is returned unchanged.
pub fn strip_attachments(raw: &[u8]) -> Vec<u8> {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return raw.to_vec();
    };
    if msg.attachments.is_empty() {
        return raw.to_vec();
    }
    let mut parent = vec![None; msg.parts.len()];
    for (i, part) in msg.parts.iter().enumerate() {
        if let PartType::Multipart(children) = &part.body {
            for &c in children {
                if let Some(slot) = parent.get_mut(c as usize) {
                    *slot = Some(i);
                }
            }
        }
    }
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for &a in &msg.attachments {
        let a = a as usize;
        let Some(part) = msg.parts.get(a) else {
            continue;
        };
        let Some(p) = parent.get(a).copied().flatten() else {
            // The root itself is the attachment.
            return headers_only(raw, part.offset_body as usize);
        };
        let Some(boundary) = msg.parts[p]
            .content_type()
            .and_then(|ct| ct.attribute("boundary"))
        else {
            continue;
        };
        let delim = format!("--{boundary}");
        let start = (part.offset_header as usize).min(raw.len());
        let Some(open) = (0..start)
            .rev()
            .find(|&i| delimiter_at(raw, i, delim.as_bytes()))
        else {
            continue;
        };
        let end = (start..raw.len())
            .find(|&i| delimiter_at(raw, i, delim.as_bytes()))
            .unwrap_or_else(|| (part.offset_end as usize).clamp(start, raw.len()));
        cuts.push((open, end));
    }
    cuts.sort_unstable();
    let mut out = Vec::with_capacity(raw.len());
    let mut at = 0;
    for (from, to) in cuts {
        if from > at {
            out.extend_from_slice(&raw[at..from]);
        }
        at = at.max(to);
    }
    out.extend_from_slice(&raw[at.min(raw.len())..]);
    out
}

/// A boundary delimiter line starts at `i`: at a line start, `delim`, then
/// the end of the line, white space, or `--` (the closing delimiter); so
/// that `--b` does not match inside `--b2`.
fn delimiter_at(raw: &[u8], i: usize, delim: &[u8]) -> bool {
    (i == 0 || raw[i - 1] == b'\n')
        && raw[i..].starts_with(delim)
        && matches!(
            raw.get(i + delim.len()),
            None | Some(b'\r' | b'\n' | b' ' | b'\t' | b'-')
        )
}

/// The header block without its `Content-*` fields, and a text body.
fn headers_only(raw: &[u8], body_at: usize) -> Vec<u8> {
    let head = String::from_utf8_lossy(&raw[..body_at.min(raw.len())]);
    let mut out = String::new();
    let mut keep = true;
    for line in head.split_inclusive('\n') {
        if line.trim().is_empty() {
            break;
        }
        if !line.starts_with([' ', '\t']) {
            keep = !line.to_ascii_lowercase().starts_with("content-");
        }
        if keep {
            out.push_str(line.trim_end_matches(['\r', '\n']));
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
    out.push_str(
        "[The body of this mail was an attachment; it was left out of this download.]\r\n",
    );
    out.into_bytes()
}

/// A mail built from the stored fields, for messages stored without their
/// source (outgoing mail from before the outbox kept it).
fn build_eml(m: &StoredMessage, files: Vec<(AttachmentMeta, Vec<u8>)>) -> ApiResult<Vec<u8>> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, Mailbox as LMailbox, MultiPart, SinglePart};

    let mailbox = |m: &Mailbox| -> Option<LMailbox> {
        Some(LMailbox::new(m.name.clone(), m.address.parse().ok()?))
    };
    let mut b = lettre::Message::builder()
        .subject(m.subject.clone())
        .date(m.created_at.into());
    match m.from.as_ref().and_then(mailbox) {
        Some(from) => b = b.from(from),
        None => return Err(ApiError::not_found("this message has no sender: no .eml")),
    }
    for to in m.to.iter().filter_map(mailbox) {
        b = b.to(to);
    }
    for cc in m.cc.iter().filter_map(mailbox) {
        b = b.cc(cc);
    }
    if let Some(id) = &m.message_id {
        b = b.message_id(Some(format!("<{id}>")));
    }
    if let Some(irt) = &m.in_reply_to {
        b = b.in_reply_to(format!("<{irt}>"));
    }
    if !m.references.is_empty() {
        let refs: Vec<String> = m.references.iter().map(|r| format!("<{r}>")).collect();
        b = b.references(refs.join(" "));
    }
    let text = m.text.clone().unwrap_or_default();
    let body = match &m.html {
        Some(html) => MultiPart::alternative_plain_html(text, html.clone()),
        None => MultiPart::mixed().singlepart(SinglePart::plain(text)),
    };
    let body = files.into_iter().fold(
        MultiPart::mixed().multipart(body),
        |mixed, (meta, bytes)| {
            let ct = ContentType::parse(&safe_content_type(&meta.content_type))
                .unwrap_or(ContentType::TEXT_PLAIN);
            mixed.singlepart(Attachment::new(safe_filename(&meta.filename)).body(bytes, ct))
        },
    );
    let message = b
        .multipart(body)
        .map_err(|e| ApiError::internal(format!("building the .eml of {}: {e}", m.id)))?;
    Ok(message.formatted())
}

// ---- zip -----------------------------------------------------------------------------

/// The files in a zip, each under a unique, safe name (`a.pdf`, `a (2).pdf`).
/// Each file is read from the store and added on the blocking pool one at a
/// time, so memory holds the archive and one file (not all of them twice).
async fn zip_attachments(store: &Store, files: &[AttachmentMeta]) -> ApiResult<Vec<u8>> {
    if files.is_empty() {
        return Err(ApiError::not_found("there are no attachments to download"));
    }
    let mut names = UniqueNames::default();
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for meta in files {
        let (meta, bytes) = store.attachment(meta.id).await?;
        let name = names.take(&safe_filename(&meta.filename));
        let method = if compressed_already(&safe_content_type(&meta.content_type)) {
            zip::CompressionMethod::Stored
        } else {
            zip::CompressionMethod::Deflated
        };
        zip = web::block(move || -> zip::result::ZipResult<_> {
            let options = zip::write::SimpleFileOptions::default()
                .compression_method(method)
                .unix_permissions(0o644);
            zip.start_file(name, options)?;
            zip.write_all(&bytes)?;
            Ok(zip)
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    }
    let cursor = web::block(move || zip.finish())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(cursor.into_inner())
}

/// Deflating these again costs CPU and saves nothing.
fn compressed_already(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/jpeg"
            | "image/png"
            | "image/gif"
            | "image/webp"
            | "application/zip"
            | "application/gzip"
            | "application/x-7z-compressed"
            | "application/x-rar-compressed"
    ) || content_type.starts_with("video/")
        || content_type.starts_with("audio/")
}

/// Hands out names, each once (case-insensitively, as Windows and macOS
/// compare them): the second `a.pdf` becomes `a (2).pdf`.
#[derive(Default)]
pub struct UniqueNames {
    taken: HashSet<String>,
}

impl UniqueNames {
    pub fn take(&mut self, name: &str) -> String {
        let (stem, ext) = match name.rfind('.') {
            Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
            _ => (name, ""),
        };
        let mut candidate = name.to_string();
        let mut n = 2;
        while !self.taken.insert(candidate.to_lowercase()) {
            candidate = format!("{stem} ({n}){ext}");
            n += 1;
        }
        candidate
    }
}

// ---- transcript ----------------------------------------------------------------------

/// The transcript's words and, with `with_images`, its PNG and JPEG
/// attachments (read from the store here, drawn by `transcript::render`).
async fn gather_transcript(
    store: &Store,
    i: &Interaction,
    with_images: bool,
) -> ApiResult<(Transcript, Vec<Picture>)> {
    let view = interaction_view(store, i).await?;
    let messages = store.messages(i.id).await?;
    let agents: HashMap<MessageId, (Option<AgentId>, Option<AgentId>)> = store
        .message_agents(i.id)
        .await?
        .into_iter()
        .map(|a| (a.message, (a.author, a.for_agent)))
        .collect();
    let mut names = AgentNames::default();

    let when = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut header = vec![
        ("Interaction".to_string(), format!("#{}", view.id)),
        ("Account".to_string(), view.account.clone()),
        ("Queue".to_string(), view.queue.clone()),
        ("Subject".to_string(), view.subject.clone()),
    ];
    if let Some(c) = &view.contact {
        let name = format!("{} {}", c.first_name, c.last_name)
            .trim()
            .to_string();
        let contact = match (&c.email, name.is_empty()) {
            (Some(e), false) => format!("{name} <{e}>"),
            (Some(e), true) => e.clone(),
            (None, _) => name,
        };
        header.push(("Contact".to_string(), contact));
    }
    let status = match &view.substatus {
        Some(s) => format!("{} ({s})", view.status),
        None => view.status.to_string(),
    };
    header.push(("Status".to_string(), status));
    header.push(("Created".to_string(), when(view.created_at)));
    if let Some(closed) = view.closed_at {
        header.push(("Closed".to_string(), when(closed)));
    }
    header.push((
        "Owner".to_string(),
        view.owner.clone().unwrap_or_else(|| "—".to_string()),
    ));
    if let Some(first) = &view.first_agent {
        header.push(("First agent".to_string(), first.clone()));
    }

    let mut entries = Vec::new();
    let mut pictures = Vec::new();
    for (n, m) in messages.iter().enumerate() {
        let n = n + 1;
        let (author, for_agent) = agents.get(&m.id).copied().unwrap_or((None, None));
        let author = names.name(store, author).await?;
        let heading = match (m.kind, m.direction) {
            (MessageKind::Mail, Direction::In) => format!("#{n} Incoming mail"),
            (MessageKind::Mail, Direction::Out) => format!("#{n} Outgoing mail"),
            (MessageKind::AutoReply, _) => format!("#{n} Auto-reply"),
            (MessageKind::Note, _) => {
                format!("#{n} INTERNAL NOTE (never sent to the customer)")
            }
            (MessageKind::SupervisorNote, _) => {
                let to = names
                    .name(store, for_agent)
                    .await?
                    .unwrap_or_else(|| "the agent".to_string());
                format!("#{n} INTERNAL: note for the agent {to} (never sent to the customer)")
            }
        };
        let internal = matches!(m.kind, MessageKind::Note | MessageKind::SupervisorNote);
        let mut fields = Vec::new();
        if internal {
            fields.push((
                "By".to_string(),
                author.clone().unwrap_or_else(|| "—".into()),
            ));
        } else {
            fields.push((
                "From".to_string(),
                m.from.as_ref().map(show).unwrap_or_default(),
            ));
            fields.push(("To".to_string(), show_all(&m.to)));
            if !m.cc.is_empty() {
                fields.push(("Cc".to_string(), show_all(&m.cc)));
            }
            if !m.bcc.is_empty() {
                fields.push(("Bcc".to_string(), show_all(&m.bcc)));
            }
            if let (Direction::Out, Some(by)) = (m.direction, &author) {
                fields.push(("Sent by".to_string(), by.clone()));
            }
        }
        fields.push(("Date".to_string(), when(m.created_at)));
        if !internal {
            fields.push(("Subject".to_string(), m.subject.clone()));
        }
        if let Some(d) = m.delivery {
            let mut delivery = d.to_string();
            if let Some(e) = &m.delivery_error {
                delivery.push_str(&format!(": {e}"));
            }
            fields.push(("Delivery".to_string(), delivery));
        }
        let body = match (&m.text, &m.html) {
            (Some(t), _) if !t.trim().is_empty() => t.clone(),
            (_, Some(h)) => crate::mail::parse::html_to_text(h),
            _ => String::new(),
        };
        let attachments = m
            .attachments
            .iter()
            .map(|a| {
                format!(
                    "{} ({}, {})",
                    a.filename,
                    a.content_type,
                    human_size(a.size)
                )
            })
            .collect();
        if with_images {
            for a in &m.attachments {
                if let Some(kind) = PictureKind::of(&a.content_type) {
                    let (_, data) = store.attachment(a.id).await?;
                    pictures.push(Picture {
                        caption: format!("#{n} attachment: {}", a.filename),
                        kind,
                        data,
                    });
                }
            }
        }
        entries.push(Entry {
            heading,
            internal,
            fields,
            body,
            attachments,
        });
    }
    let title = format!("{} — interaction #{}", view.subject, view.id);
    Ok((
        Transcript {
            title,
            header,
            entries,
        },
        pictures,
    ))
}

fn show(m: &Mailbox) -> String {
    match &m.name {
        Some(name) if !name.trim().is_empty() => format!("{name} <{}>", m.address),
        _ => m.address.clone(),
    }
}

fn show_all(list: &[Mailbox]) -> String {
    list.iter().map(show).collect::<Vec<_>>().join(", ")
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{:.1} MB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// Agent names, each looked up once.
#[derive(Default)]
struct AgentNames {
    known: HashMap<AgentId, String>,
}

impl AgentNames {
    async fn name(&mut self, store: &Store, id: Option<AgentId>) -> ApiResult<Option<String>> {
        let Some(id) = id else { return Ok(None) };
        if let Some(name) = self.known.get(&id) {
            return Ok(Some(name.clone()));
        }
        let name = match store.agent(id).await {
            Ok(a) => format!("{} ({})", a.name, a.username),
            Err(StoreError::NotFound(_)) => format!("agent {id}"),
            Err(e) => return Err(e.into()),
        };
        self.known.insert(id, name.clone());
        Ok(Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_filenames_cannot_add_headers() {
        let d = content_disposition("attachment", "evil\r\nSet-Cookie: x=1\".pdf");
        assert!(!d.contains('\r') && !d.contains('\n'));
        assert_eq!(d.matches('"').count(), 2, "{d}");
        let d = content_disposition("inline", "résumé 😀.png");
        assert_eq!(
            d,
            "inline; filename=\"r_sum_ _.png\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%F0%9F%98%80.png"
        );
        assert_eq!(safe_filename("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_filename(" \u{0} "), "attachment");
    }

    #[test]
    fn names_are_unique_case_insensitively() {
        let mut n = UniqueNames::default();
        assert_eq!(n.take("a.pdf"), "a.pdf");
        assert_eq!(n.take("A.pdf"), "A (2).pdf");
        assert_eq!(n.take("a.pdf"), "a (3).pdf");
        assert_eq!(n.take("README"), "README");
        assert_eq!(n.take("README"), "README (2)");
    }

    #[test]
    fn content_types_are_checked() {
        assert_eq!(safe_content_type("Image/PNG; name=x"), "image/png");
        assert_eq!(
            safe_content_type("text/html\r\nX: y"),
            "application/octet-stream"
        );
        assert_eq!(safe_content_type("nonsense"), "application/octet-stream");
        assert!(previewable("image/png"));
        assert!(!previewable("image/svg+xml"));
        assert!(!previewable("text/html"));
    }

    const MIXED: &[u8] = b"From: a@b.test\r\nTo: c@d.test\r\nSubject: files\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
        preamble\r\n--b\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n\
        --b2\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b2\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--b2--\r\n\
        --b\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n\
        --b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=\"b.png\"\r\n\r\nPNGDATA\r\n--b--\r\n";

    #[test]
    fn stripping_keeps_headers_and_bodies_and_drops_attachments() {
        let stripped = strip_attachments(MIXED);
        let text = String::from_utf8(stripped.clone()).unwrap();
        let msg = MessageParser::default().parse(&stripped).unwrap();
        assert_eq!(msg.attachment_count(), 0, "{text}");
        assert_eq!(msg.body_text(0).as_deref().map(str::trim), Some("hello"));
        assert!(msg.body_html(0).unwrap().contains("<p>hello</p>"));
        assert_eq!(msg.subject(), Some("files"));
        assert!(text.ends_with("--b--\r\n"), "{text}");
        assert!(!text.contains("a.pdf") && !text.contains("PNGDATA"));
        // No attachments: unchanged.
        let plain = b"Subject: x\r\n\r\nbody\r\n";
        assert_eq!(strip_attachments(plain), plain);
    }

    #[test]
    fn a_mail_that_is_one_attachment_keeps_its_headers() {
        let raw = b"From: a@b.test\r\nSubject: scan\r\nContent-Type: application/pdf\r\n\
            Content-Disposition: attachment; filename=\"s.pdf\"\r\n\r\n%PDF-1.4\r\n";
        let stripped = strip_attachments(raw);
        let msg = MessageParser::default().parse(&stripped).unwrap();
        assert_eq!(msg.attachment_count(), 0);
        assert_eq!(msg.subject(), Some("scan"));
    }
}
