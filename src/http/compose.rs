//! Sending mail (DESIGN.md "Working an interaction"): uploads, reply,
//! reply-all and forward on an interaction, and new mail that starts one.
//!
//! Every send is committed first — the message and its outbox row in one
//! transaction (`Store::enqueue_mail`, invariant 4) — and only then is the
//! account's sender woken and the owner's sockets told (invariant 3). The
//! answer is the new message with `delivery: "queued"`; the sender reports
//! `sent` or `failed` later over the WebSocket (docs/compose.md).

use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, post, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::info;
use utoipa::{OpenApi, ToSchema};

use super::access::{Act, check};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Caller;
use super::interactions::message_view;
use super::state::AppState;
use super::views::interaction_view;
use super::ws::protocol::ServerFrame;
use crate::config::DEFAULT_MAX_ATTACHMENT_BYTES;
use crate::domain::threading::{add_subject_token, forward_subject, reply_subject};
use crate::domain::{
    AttachmentId, Direction, InteractionId, InteractionStatus, MessageId, MessageKind, Role,
};
use crate::mail::Mailbox;
use crate::mail::compose::{
    self, ComposeError, MailParts, OutgoingFile, build_mime, parse_recipients,
};
use crate::store::{
    Account, AttachmentMeta, Enqueued, Interaction, NewUpload, OutgoingFiles, OutgoingMail,
    OutgoingThread, StoreError, StoredMessage,
};

#[derive(OpenApi)]
#[openapi(paths(upload, send_message, new_mail))]
pub struct Doc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(upload).service(send_message).service(new_mail);
}

// ---- uploads --------------------------------------------------------------

/// An upload, as `POST /attachments` answers and messages list it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    pub id: AttachmentId,
    pub filename: String,
    pub content_type: String,
    /// In bytes.
    pub size: u64,
}

impl From<AttachmentMeta> for UploadView {
    fn from(m: AttachmentMeta) -> Self {
        UploadView {
            id: m.id,
            filename: m.filename,
            content_type: m.content_type,
            size: m.size,
        }
    }
}

/// After a refused upload, the rest of the body is read and thrown away (not
/// kept), up to this much more, so that the client hears the 413 instead of
/// a reset connection; beyond it the connection is dropped.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

/// The largest file an upload may be: the largest limit of any account (each
/// account's own limit is checked again when the upload is sent from it).
async fn upload_limit(state: &AppState) -> ApiResult<u64> {
    Ok(state
        .store
        .list_accounts()
        .await?
        .iter()
        .map(|a| a.options.max_attachment_bytes)
        .max()
        .unwrap_or(DEFAULT_MAX_ATTACHMENT_BYTES))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "the file is larger than the upload limit of {limit} bytes ({} MB)",
        limit / (1024 * 1024)
    ))
}

/// Upload one file (multipart/form-data, the first file part; its field
/// name does not matter). It can then be attached by id, by its uploader
/// only, to one message. The body is streamed: a file over the limit is
/// refused with 413 as soon as it passes the limit, never held in memory.
#[utoipa::path(post, path = "/api/v1/attachments", tag = "compose", security(("bearer" = [])),
    request_body(content_type = "multipart/form-data", content = Object, description = "one file part"),
    responses((status = 201, body = UploadView), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
#[post("/attachments")]
pub async fn upload(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    mut form: Multipart,
) -> ApiResult<HttpResponse> {
    let limit = upload_limit(&state).await?;
    // A declared length far over the limit is refused before reading.
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit + DRAIN_LIMIT as u64) {
        return Err(too_large(limit));
    }
    let mut file: Option<(String, String, Vec<u8>)> = None;
    let mut over = false;
    let mut drained = 0usize;
    while let Some(part) = form.next().await {
        let mut part = part.map_err(|e| ApiError::bad_request(format!("multipart: {e}")))?;
        let is_file = file.is_none()
            && !over
            && part
                .content_disposition()
                .and_then(|d| d.get_filename())
                .is_some();
        let mut data = Vec::new();
        while let Some(chunk) = part.next().await {
            let chunk = chunk.map_err(|e| ApiError::bad_request(format!("multipart: {e}")))?;
            if is_file && !over {
                if (data.len() + chunk.len()) as u64 > limit {
                    over = true;
                    data = Vec::new();
                } else {
                    data.extend_from_slice(&chunk);
                }
            } else {
                drained += chunk.len();
                if drained > DRAIN_LIMIT {
                    return Err(too_large(limit));
                }
            }
        }
        if is_file && !over {
            let filename = part
                .content_disposition()
                .and_then(|d| d.get_filename())
                .map(clean_filename)
                .unwrap_or_else(|| "attachment".to_string());
            let content_type = part
                .content_type()
                .map(|m| m.essence_str().to_ascii_lowercase())
                .unwrap_or_else(|| "application/octet-stream".to_string());
            file = Some((filename, content_type, data));
        }
    }
    if over {
        return Err(too_large(limit));
    }
    let (filename, content_type, data) = file.ok_or_else(|| {
        ApiError::bad_request("no file part in the form (send one part with a filename)")
    })?;
    let meta = state
        .store
        .store_upload(NewUpload {
            agent: caller.agent.id,
            filename,
            content_type,
            data,
        })
        .await?;
    info!(agent = %caller.agent.id, attachment = %meta.id, size = meta.size, "uploaded");
    Ok(HttpResponse::Created().json(UploadView::from(meta)))
}

/// A file name without a path or control characters.
fn clean_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "attachment".to_string()
    } else {
        cleaned.chars().take(255).collect()
    }
}

// ---- reply, reply-all, forward --------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Reply,
    ReplyAll,
    Forward,
}

/// What to do once the mail is queued.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct After {
    /// "Send as": set this sub-status (a name from the admin list).
    pub substatus: Option<String>,
    /// "Send and close", with a disposition path if the queue needs one.
    pub close: Option<AfterClose>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AfterClose {
    pub disposition: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    pub mode: Mode,
    /// The message to reply to or forward (an id of this interaction);
    /// default: the last customer mail, else the last mail.
    pub message: Option<MessageId>,
    /// Replaces the computed recipients (reply: the Reply-To, else the From;
    /// reply_all: those plus every To and Cc but our own). Required to forward.
    pub to: Option<Vec<String>>,
    pub cc: Option<Vec<String>>,
    pub bcc: Option<Vec<String>>,
    /// Default: the original's with one `Re:` / `Fwd:`.
    pub subject: Option<String>,
    pub text: Option<String>,
    /// Sanitised; a text alternative is made from it when `text` is absent.
    pub html: Option<String>,
    /// Upload ids (the caller's own); to forward, also the original's attachment ids.
    pub attachments: Option<Vec<AttachmentId>>,
    pub after: Option<After>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMailBody {
    /// The account's key.
    pub account: String,
    pub to: Vec<String>,
    pub cc: Option<Vec<String>>,
    pub bcc: Option<Vec<String>>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Option<Vec<AttachmentId>>,
}

fn compose_error(e: ComposeError) -> ApiError {
    match e {
        ComposeError::BadAddresses(_) => ApiError::bad_request(e.to_string()),
        ComposeError::Build(msg) => ApiError::bad_request(msg),
    }
}

/// To, Cc and Bcc parsed together, so every bad address is listed in one 400.
fn recipients(
    to: Option<&[String]>,
    cc: Option<&[String]>,
    bcc: Option<&[String]>,
) -> ApiResult<[Option<Vec<Mailbox>>; 3]> {
    let mut bad = Vec::new();
    let mut out: [Option<Vec<Mailbox>>; 3] = [None, None, None];
    for (slot, list) in out.iter_mut().zip([to, cc, bcc]) {
        if let Some(list) = list {
            match parse_recipients(list) {
                Ok(parsed) => *slot = Some(parsed),
                Err(ComposeError::BadAddresses(mut b)) => bad.append(&mut b),
                Err(e) => return Err(compose_error(e)),
            }
        }
    }
    if bad.is_empty() {
        Ok(out)
    } else {
        Err(compose_error(ComposeError::BadAddresses(bad)))
    }
}

/// The files of a mail: the caller's uploads (checked against the account's
/// limit), files of this thread's messages named by id (carried, as a draft
/// may name them), and, for a forward, every attachment of the original.
async fn files(
    state: &AppState,
    caller: &Caller,
    account: &Account,
    ids: &[AttachmentId],
    original: Option<&StoredMessage>,
    thread: &[StoredMessage],
) -> ApiResult<(OutgoingFiles, Vec<OutgoingFile>)> {
    let mut files = OutgoingFiles::default();
    let mut loaded = Vec::new();
    let limit = account.options.max_attachment_bytes;
    let mut seen = Vec::new();
    let forwarded: Vec<AttachmentId> = original
        .map(|m| m.attachments.iter().map(|a| a.id).collect())
        .unwrap_or_default();
    let in_thread = |id: &AttachmentId| {
        thread
            .iter()
            .any(|m| m.attachments.iter().any(|a| a.id == *id))
    };
    for id in forwarded.iter().chain(ids) {
        if seen.contains(id) {
            continue;
        }
        seen.push(*id);
        if forwarded.contains(id) || in_thread(id) {
            let (meta, data) = state.store.attachment(*id).await?;
            files.carried.push(*id);
            loaded.push(OutgoingFile {
                filename: meta.filename,
                content_type: meta.content_type,
                data,
            });
            continue;
        }
        let (meta, data) = match state.store.upload(*id, caller.agent.id).await {
            Ok(found) => found,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::bad_request(format!(
                    "attachment {id} is neither an unused upload of yours nor a file of this interaction"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        if meta.size > limit {
            return Err(ApiError::too_large(format!(
                "{} is {} bytes, over account {}'s limit of {limit} bytes",
                meta.filename, meta.size, account.key
            )));
        }
        files.uploads.push(*id);
        loaded.push(OutgoingFile {
            filename: meta.filename,
            content_type: meta.content_type,
            data,
        });
    }
    Ok((files, loaded))
}

/// The message a reply or forward answers: the one named, else the last
/// customer mail, else the last mail.
fn original(
    messages: &[StoredMessage],
    named: Option<MessageId>,
) -> ApiResult<Option<StoredMessage>> {
    if let Some(id) = named {
        return messages
            .iter()
            .find(|m| m.id == id && m.kind == MessageKind::Mail)
            .cloned()
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("message {id} is not a mail of this interaction"))
            });
    }
    let mails = || {
        messages
            .iter()
            .rev()
            .filter(|m| m.kind == MessageKind::Mail)
    };
    Ok(mails()
        .find(|m| m.direction == Direction::In)
        .or_else(|| mails().next())
        .cloned())
}

/// Who replies go to when the original is one of ours: its recipients.
fn reply_targets(orig: &StoredMessage) -> Vec<Mailbox> {
    match orig.direction {
        Direction::In => compose::reply_to_of(&orig.reply_to, orig.from.as_ref()),
        Direction::Out => orig.to.clone(),
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
}

/// Our own addresses for an account (left out of reply-all).
fn our_addresses(account: &Account) -> Vec<String> {
    let mut ours = vec![account.address.clone()];
    for user in [&account.imap.username, &account.smtp.username] {
        if user.contains('@') {
            ours.push(user.clone());
        }
    }
    ours
}

/// Parts of a mail that do not depend on the interaction id.
struct Prepared {
    to: Vec<Mailbox>,
    cc: Vec<Mailbox>,
    bcc: Vec<Mailbox>,
    subject: String,
    text: String,
    html: Option<String>,
    in_reply_to: Option<String>,
    references: Vec<String>,
    attachments: Vec<OutgoingFile>,
}

/// The mail builder run inside the commit: the Message-ID and the subject
/// token name the interaction.
fn builder(
    state: &AppState,
    caller: &Caller,
    account: &Account,
    p: Prepared,
) -> crate::store::BuildMail {
    let signer = state.signer.clone();
    let author = caller.agent.id;
    let key = account.key.clone();
    let token = account.options.subject_token;
    let from = Mailbox {
        name: None,
        address: account.address.clone(),
    };
    Box::new(move |interaction: &Interaction| {
        let message_id = signer.make(&key, interaction.id, domain_of(&from.address));
        let subject = if token {
            add_subject_token(&p.subject, &key, interaction.id)
        } else {
            p.subject
        };
        let parts = MailParts {
            from: from.clone(),
            to: p.to.clone(),
            cc: p.cc.clone(),
            subject,
            text: p.text.clone(),
            html: p.html.clone(),
            message_id,
            in_reply_to: p.in_reply_to.clone(),
            references: p.references.clone(),
            attachments: p.attachments,
        };
        let raw = build_mime(&parts).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(OutgoingMail {
            author,
            from,
            to: parts.to,
            cc: parts.cc,
            bcc: p.bcc,
            subject: parts.subject,
            text: parts.text,
            html: parts.html,
            message_id: parts.message_id,
            in_reply_to: parts.in_reply_to,
            references: parts.references,
            raw,
        })
    })
}

/// The committed message as the API shows it to `caller`.
async fn committed_view(state: &AppState, caller: &Caller, done: &Enqueued) -> ApiResult<Value> {
    let messages = state.store.messages(done.interaction.id).await?;
    let m = messages
        .iter()
        .find(|m| m.id == done.message)
        .ok_or_else(|| ApiError::internal("the committed message is missing"))?;
    message_view(m, &caller.agent)
}

/// Reply, reply to all, or forward. The answer is the new message, queued;
/// `after` then sets a sub-status ("send as") or closes ("send and close").
/// If that second step fails, the mail is still queued: the answer is 201
/// with the message and `after_error`.
#[utoipa::path(post, path = "/api/v1/interactions/{id}/messages", tag = "compose", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SendBody,
    responses((status = 201, description = "the new message, `delivery: queued`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "closed, or no longer yours"), (status = 413, body = ErrorBody)))]
#[post("/interactions/{id}/messages")]
pub async fn send_message(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<InteractionId>,
    body: web::Json<SendBody>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let body = body.into_inner();
    let interaction = store.interaction(id.into_inner()).await?;
    check(store, &caller, &interaction, Act::Work).await?;
    if interaction.status != InteractionStatus::Open {
        return Err(ApiError::conflict(
            "the interaction is closed; reopen it first",
        ));
    }
    let [to, cc, bcc] = recipients(body.to.as_deref(), body.cc.as_deref(), body.bcc.as_deref())?;
    let account = store.account(interaction.account).await?;
    // Checked before sending: a mail cannot be taken back when its second
    // step turns out impossible.
    if let Some(after) = &body.after {
        if let Some(name) = &after.substatus {
            let known = store.substatuses().await?;
            if !known.iter().any(|s| &s.name == name) {
                return Err(ApiError::bad_request(format!(
                    "there is no sub-status named {name:?}"
                )));
            }
        }
        if let Some(close) = &after.close
            && close.disposition.is_none()
            && store.queue(interaction.queue).await?.disposition_required
        {
            return Err(ApiError::bad_request(
                "this queue requires a disposition to close",
            ));
        }
    }
    let messages = store.messages(interaction.id).await?;
    let orig = original(&messages, body.message)?;
    let ours = our_addresses(&account);
    let (to, cc) = match body.mode {
        Mode::Reply => {
            let to = match (to, &orig) {
                (Some(to), _) => to,
                (None, Some(o)) => reply_targets(o),
                (None, None) => Vec::new(),
            };
            (to, cc.unwrap_or_default())
        }
        Mode::ReplyAll => {
            let (computed_to, computed_cc) = match &orig {
                Some(o) if o.direction == Direction::In => {
                    compose::reply_all(&o.reply_to, o.from.as_ref(), &o.to, &o.cc, &ours)
                }
                Some(o) => compose::reply_all(&[], None, &o.to, &o.cc, &ours),
                None => (Vec::new(), Vec::new()),
            };
            (to.unwrap_or(computed_to), cc.unwrap_or(computed_cc))
        }
        Mode::Forward => {
            let to = to
                .filter(|t| !t.is_empty())
                .ok_or_else(|| ApiError::bad_request("a forward needs `to`"))?;
            (to, cc.unwrap_or_default())
        }
    };
    let bcc = bcc.unwrap_or_default();
    if to.is_empty() && cc.is_empty() && bcc.is_empty() {
        return Err(ApiError::bad_request(
            "no recipients: there is no mail to reply to; give `to`",
        ));
    }
    let base_subject = orig
        .as_ref()
        .map(|o| o.subject.clone())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| interaction.subject.clone());
    let subject = match (&body.subject, body.mode) {
        (Some(s), _) => s.clone(),
        (None, Mode::Forward) => forward_subject(&base_subject),
        (None, _) => reply_subject(&base_subject),
    };
    let signature = account.options.signature.as_deref();
    let (mut text, mut html) =
        compose::bodies(body.text.as_deref(), body.html.as_deref(), signature);
    let (in_reply_to, references) = match (&orig, body.mode) {
        (Some(o), Mode::Reply | Mode::ReplyAll) => (
            o.message_id.clone(),
            compose::reply_references(&o.references, o.message_id.as_deref()),
        ),
        _ => (None, Vec::new()),
    };
    let forwarded = if body.mode == Mode::Forward {
        orig.as_ref()
    } else {
        None
    };
    if let Some(o) = forwarded {
        let header = [
            (
                "From",
                o.from
                    .as_ref()
                    .map(|f| compose::display(std::slice::from_ref(f)))
                    .unwrap_or_default(),
            ),
            ("Date", o.created_at.to_rfc2822()),
            ("Subject", o.subject.clone()),
            ("To", compose::display(&o.to)),
            ("Cc", compose::display(&o.cc)),
        ];
        let intro_text = text.clone();
        html = compose::forwarded_html(
            html.as_deref(),
            &intro_text,
            &header,
            o.html.as_deref(),
            o.text.as_deref().unwrap_or_default(),
        );
        text = compose::forwarded_text(&intro_text, &header, o.text.as_deref().unwrap_or_default());
    }
    let ids = body.attachments.clone().unwrap_or_default();
    let (outgoing_files, attachments) =
        files(&state, &caller, &account, &ids, forwarded, &messages).await?;
    if text.trim().is_empty() && html.is_none() && attachments.is_empty() {
        return Err(ApiError::bad_request(
            "the mail is empty: give text, html or attachments",
        ));
    }
    let prepared = Prepared {
        to,
        cc,
        bcc,
        subject,
        text,
        html,
        in_reply_to,
        references,
        attachments,
    };
    // The owner guard: an admin may send on an interaction that is not
    // theirs; anyone else only while it is still theirs at the commit.
    let owner_guard = (interaction.owner == Some(caller.agent.id)
        || !caller.agent.role.at_least(Role::Admin))
    .then_some(caller.agent.id);
    let done = store
        .enqueue_mail(
            OutgoingThread::Existing {
                interaction: interaction.id,
                owner: owner_guard,
            },
            outgoing_files,
            builder(&state, &caller, &account, prepared),
        )
        .await?;
    // Announced before the sender is woken: both frames go through the
    // owner's agent actor in the order they are pushed, so `queued` can
    // never arrive after `sent`.
    announce_new(&state, &done).await;
    state.senders.wake(account.id);
    let mut view = committed_view(&state, &caller, &done).await?;
    // The reply the caller was drafting is sent: their draft goes (another
    // agent's draft, if any, is theirs to keep or discard).
    match store.delete_draft(interaction.id, caller.agent.id).await {
        Ok(()) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(error = %e, "could not delete the sent draft"),
    }
    info!(agent = %caller.agent.id, interaction = %interaction.id, message = %done.message, mode = ?body.mode, "mail queued");

    if let Some(after) = body.after
        && let Err(e) = after_send(&state, &caller, interaction.id, after).await
        && let Some(obj) = view.as_object_mut()
    {
        obj.insert("after_error".into(), Value::from(e.message));
    }
    Ok(HttpResponse::Created().json(view))
}

/// "Send as" and "send and close".
async fn after_send(
    state: &AppState,
    caller: &Caller,
    id: InteractionId,
    after: After,
) -> ApiResult<()> {
    if let Some(name) = after.substatus {
        let updated = state.store.set_substatus(id, Some(name)).await?;
        if let Some(owner) = updated.owner {
            let view = interaction_view(&state.store, &updated).await?;
            let json = serde_json::to_value(&view).map_err(ApiError::internal)?;
            state
                .hub
                .push(owner, ServerFrame::InteractionUpdated { interaction: json });
        }
    }
    if let Some(close) = after.close {
        super::work::close_interaction(state, caller, id, close.disposition).await?;
    }
    Ok(())
}

/// Tell the owner's sockets (every tab) of the new message.
async fn announce_new(state: &AppState, done: &Enqueued) {
    let change = crate::store::DeliveryChange {
        interaction: done.interaction.clone(),
        message: done.message,
        delivery: crate::domain::Delivery::Queued,
    };
    let deps = crate::actors::sender::SenderDeps {
        store: state.store.clone(),
        hub: state.hub.clone(),
        settings: state.settings.outbox.clone(),
    };
    crate::actors::sender::announce(&deps, &change).await;
}

// ---- new mail -----------------------------------------------------------------

/// Whether the caller may send from an account: agents from the accounts
/// routed to their queues; supervisors and admins from any.
async fn may_use(state: &AppState, caller: &Caller, account: &Account) -> ApiResult<bool> {
    if caller.agent.role.at_least(Role::Supervisor) {
        return Ok(true);
    }
    let queue = state.store.queue(account.queue_id).await?;
    Ok(queue.agents.contains(&caller.agent.username))
}

/// A new outbound mail: a new interaction, owned by the caller (it counts
/// against their capacity), in the account's queue, with this mail as its
/// first message. The contact is the first recipient's.
#[utoipa::path(post, path = "/api/v1/interactions", tag = "compose", security(("bearer" = [])),
    request_body = NewMailBody,
    responses((status = 201, description = "the interaction with `messages: [the new message]`", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
#[post("/interactions")]
pub async fn new_mail(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<NewMailBody>,
) -> ApiResult<HttpResponse> {
    let store = &state.store;
    let body = body.into_inner();
    let account = match store
        .account_by_key(&body.account.to_ascii_uppercase())
        .await
    {
        Err(StoreError::NotFound(_)) => {
            return Err(ApiError::not_found(format!(
                "no account {:?}",
                body.account
            )));
        }
        other => other?,
    };
    if !may_use(&state, &caller, &account).await? {
        return Err(ApiError::forbidden(
            "agents may only send from the accounts of their queues",
        ));
    }
    if body.subject.trim().is_empty() {
        return Err(ApiError::bad_request("a new mail needs a subject"));
    }
    let [to, cc, bcc] = recipients(Some(&body.to), body.cc.as_deref(), body.bcc.as_deref())?;
    let to = to.unwrap_or_default();
    if to.is_empty() {
        return Err(ApiError::bad_request("a new mail needs `to`"));
    }
    let (text, html) = compose::bodies(
        body.text.as_deref(),
        body.html.as_deref(),
        account.options.signature.as_deref(),
    );
    let ids = body.attachments.clone().unwrap_or_default();
    let (outgoing_files, attachments) = files(&state, &caller, &account, &ids, None, &[]).await?;
    let contact = to.first().cloned();
    let prepared = Prepared {
        to,
        cc: cc.unwrap_or_default(),
        bcc: bcc.unwrap_or_default(),
        subject: body.subject.trim().to_string(),
        text,
        html,
        in_reply_to: None,
        references: Vec::new(),
        attachments,
    };
    let done = store
        .enqueue_mail(
            OutgoingThread::New {
                account: account.id,
                queue: account.queue_id,
                owner: caller.agent.id,
                subject: body.subject.trim().to_string(),
                contact,
            },
            outgoing_files,
            builder(&state, &caller, &account, prepared),
        )
        .await?;
    // Committed: the caller owns one more open interaction.
    state.hub.routing().owned_changed(caller.agent.id, 1);
    let message = committed_view(&state, &caller, &done).await?;
    let view = interaction_view(store, &done.interaction).await?;
    let mut json = serde_json::to_value(&view).map_err(ApiError::internal)?;
    state.hub.push(
        caller.agent.id,
        ServerFrame::InteractionUpdated {
            interaction: json.clone(),
        },
    );
    // Before the wake, so that `queued` reaches the sockets before `sent`.
    announce_new(&state, &done).await;
    state.senders.wake(account.id);
    if let Some(obj) = json.as_object_mut() {
        obj.insert("messages".into(), Value::Array(vec![message]));
    }
    info!(agent = %caller.agent.id, interaction = %done.interaction.id, account = %account.key, "new mail queued");
    Ok(HttpResponse::Created().json(json))
}
