//! Operator routes (operator token only, audited): `POST /v1/admin/tokens` (issue or
//! rotate a bearer token), `GET /v1/admin/audit` (tail of the audit trail). Every admin
//! action and every registration is recorded in the audit log (`node::audit`) and synced
//! to disk before it is answered.

use std::net::IpAddr;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{auth_failed, auth_throttled, client_ip, error, is_configured_operator, Shared, State};
use crate::actors::auth;

/// Append to the audit log off the worker's event loop; an entry that cannot be written is
/// an error the caller reports (the action was done, but the trail must not silently lose
/// it).
pub(super) async fn audit(
    st: &State,
    event: &'static str,
    actor: &'static str,
    remote: Option<IpAddr>,
    fields: Value,
) -> Result<(), HttpResponse> {
    let log = st.peers.audit.clone();
    match web::block(move || log.append(event, actor, remote, fields)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(error = %e, event, "cannot write the audit log");
            Err(error(500, format!("done, but the audit log could not be written: {e}")))
        }
        Err(_) => Err(error(500, "audit log writer unavailable")),
    }
}

/// Operator check shared by the admin routes (throttled like every token check).
pub(super) async fn operator(req: &HttpRequest, st: &State) -> Result<(), HttpResponse> {
    if let Some(r) = auth_throttled(req, st) {
        return Err(r);
    }
    if !is_configured_operator(req, st).await {
        return Err(auth_failed(req, st, 401, "unauthorized: the operator token is required"));
    }
    Ok(())
}

/// `POST /v1/admin/tokens` `{"subject", "rate"?, "burst"?, "expires_in"? (seconds),
/// "rotate"?}` → the new token (shown once) and, when rotating, the revoked hash prefixes.
pub(super) async fn admin_tokens(req: HttpRequest, body: web::Bytes, st: Shared) -> HttpResponse {
    if let Err(r) = operator(&req, &st).await {
        return r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "body must be JSON");
    };
    let Some(subject) = v["subject"].as_str() else {
        return error(400, "missing field: subject");
    };
    let num = |k: &str| v.get(k).filter(|x| !x.is_null());
    if num("rate").is_some_and(|x| !x.is_number()) || num("burst").is_some_and(|x| !x.is_number()) {
        return error(400, "rate and burst must be numbers");
    }
    let msg = auth::IssueToken {
        subject: subject.to_string(),
        rate: v["rate"].as_f64(),
        burst: v["burst"].as_f64(),
        expires_in: v["expires_in"].as_u64().unwrap_or(0),
        rotate: v["rotate"].as_bool().unwrap_or(false),
    };
    let rotate = msg.rotate;
    match st.peers.auth.send(msg).await {
        Ok(Ok(out)) => {
            let fields = json!({
                "subject": out["subject"],
                "token_hash_prefix": out["token_hash_prefix"],
                "expires_at": out["expires_at"],
                "rate_per_sec": out["rate_per_sec"],
                "rate_burst": out["rate_burst"],
                "revoked": out["revoked"],
            });
            let event = if rotate { "token.rotated" } else { "token.issued" };
            if let Err(r) = audit(&st, event, "operator", client_ip(&req, &st), fields).await {
                return r;
            }
            HttpResponse::Ok().json(out)
        }
        Ok(Err(e)) => error(e.status, e.message),
        Err(_) => error(503, "auth unavailable"),
    }
}

/// `GET /v1/admin/audit?limit=N&event=E` → `{"entries": [...]}`, oldest first.
pub(super) async fn admin_audit(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Err(r) = operator(&req, &st).await {
        return r;
    }
    let q = super::query_map(&req);
    let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(50).min(100_000);
    let event = q.get("event").cloned();
    let path = st.peers.audit.path().to_path_buf();
    match web::block(move || crate::files::audit::tail(&path, limit, event.as_deref())).await {
        Ok(Ok(entries)) => HttpResponse::Ok().json(json!({ "entries": entries })),
        Ok(Err(e)) => error(500, format!("reading the audit log: {e}")),
        Err(_) => error(500, "audit log reader unavailable"),
    }
}

/// Files of the data dir that a backup carries besides the database trees (the node key
/// unseals the stored TSIG secrets; the operator key signs heartbeats).
const BACKUP_FILES: [&str; 3] = ["node.key", "operator.key", crate::files::audit::FILE_NAME];

/// `POST /v1/admin/backup` → the backup archive (`application/octet-stream`): a consistent
/// snapshot written by the store actor (see `store::ExportBackup`).
pub(super) async fn admin_backup(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Err(r) = operator(&req, &st).await {
        return r;
    }
    let Some(data_dir) = st.peers.audit.path().parent().map(|p| p.to_path_buf()) else {
        return error(500, "no data directory");
    };
    let tmp = data_dir.join(format!(
        "backup-{}.tmp",
        hex::encode(crate::proto::keys::random_32())[..16].to_owned()
    ));
    let dir = data_dir.clone();
    let files = web::block(move || {
        BACKUP_FILES
            .iter()
            .filter_map(|n| std::fs::read(dir.join(n)).ok().map(|c| (n.to_string(), c)))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    // The other actors' databases, each read out by its owner.
    use crate::actors::actor_db::ExportTrees;
    let mut trees = Vec::new();
    let dumps = [
        st.peers.auth.send(ExportTrees).await,
        st.peers.sync.send(ExportTrees).await,
        match &st.peers.heartbeat {
            Some(h) => h.send(ExportTrees).await,
            None => Ok(Ok(vec![])),
        },
    ];
    for d in dumps {
        match d {
            Ok(Ok(v)) => trees.extend(v),
            Ok(Err(e)) => return error(500, format!("backup failed: {e}")),
            Err(_) => return error(503, "an actor is restarting; try again"),
        }
    }
    let msg = crate::actors::store::ExportBackup { path: tmp.clone(), files, trees };
    let entries = match st.peers.store.send(msg).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&tmp);
            return error(500, format!("backup failed: {e}"));
        }
        Err(_) => return error(503, "store unavailable"),
    };
    // Stream the file back: opened, then unlinked (the open descriptor keeps it readable),
    // so no copy stays in the data dir and the archive is never held in memory whole.
    let file = match tokio::fs::File::open(&tmp).await {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return error(500, format!("reading the backup back: {e}"));
        }
    };
    let _ = std::fs::remove_file(&tmp);
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => return error(500, format!("reading the backup back: {e}")),
    };
    let fields = json!({"entries": entries, "bytes": len});
    if let Err(r) = audit(&st, "backup", "operator", client_ip(&req, &st), fields).await {
        return r;
    }
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 64 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(web::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("X-Backup-Entries", entries.to_string()))
        .no_chunking(len)
        .streaming(stream)
}

/// `POST /v1/admin/reload`: the process re-reads its configuration and applies what can
/// change without a restart (`node::reload`); answers with what was applied.
pub(super) async fn admin_reload(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Err(r) = operator(&req, &st).await {
        return r;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    if st.peers.hooks.requests.send(tx).await.is_err() {
        return error(503, "reload is not available in this process");
    }
    let outcome = rx.await.unwrap_or_else(|_| Err("reload abandoned".into()));
    let fields = match &outcome {
        Ok(summary) => json!({"ok": true, "summary": summary}),
        Err(e) => json!({"ok": false, "error": e}),
    };
    if let Err(r) = audit(&st, "reload", "operator", client_ip(&req, &st), fields).await {
        return r;
    }
    match outcome {
        Ok(summary) => HttpResponse::Ok().json(json!({"reloaded": summary})),
        Err(e) => error(400, format!("reload refused, nothing changed: {e}")),
    }
}
