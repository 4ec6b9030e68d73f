//! The HTTP ingress (actix-web; rustls when a certificate is configured).
//!
//! Routes (reference-compatible, node.md §2–3): `/health`, `/metrics`, `/stats`,
//! `/status.json`, `/`, `/v1/records/{name}` (GET/POST/DELETE),
//! `/v1/registration/{challenge,confirm,tsig-confirm}`, and `/debug/fail/{actor}` when
//! fault injection is on. Handlers parse and check input, then send typed messages to
//! the store and auth actors; they hold no records themselves.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use parking_lot::Mutex;
use serde_json::json;

use super::auth::{
    self, AuthActor, AuthorizeApply, AuthorizeWrite, IsOperator, NewChallenge, Register,
};
use super::dns::{self, DnsActor, GetStats};
use super::store::{self, Apply, Count, Get, Op, Origin, StoreActor, StoreError};
use super::supervisor::{GetHealth, SupervisorActor};
use crate::policy::auth_throttle::FailureThrottle;
use crate::policy::http_input::{
    clean_name, delete_body, in_zone, publish_body, valid_record_name, valid_record_value,
};
use crate::policy::limits::TokenBuckets;
use crate::policy::metrics::{escape_label as esc_label, method_label, status_label};

pub mod hooks;
mod ops;
mod status;

/// What the ingress needs from the configuration.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub listen: SocketAddr,
    pub tls: Option<(String, String)>,
    pub workers: usize,
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub trusted_proxies: Vec<IpAddr>,
    pub zone: String,
    /// Node name shown on the status page (the registration host name).
    pub node_name: String,
    pub version: &'static str,
    pub max_ttl: u64,
    pub max_value_bytes: usize,
    pub max_values_per_name: usize,
    pub max_body_bytes: usize,
    pub http_rate: f64,
    pub http_burst: f64,
    pub registration_rate: f64,
    pub registration_burst: f64,
    pub limit_loopback: bool,
    pub fault_injection: bool,
    /// Bearer token for `/v1/sync/*` (empty = those routes answer 403).
    pub sync_token: String,
    /// Pinned cluster operator key, for serving verified manifests.
    pub operator_spk: Option<[u8; 32]>,
    /// Cluster base domain whose `cluster.<base>` manifest we serve.
    pub cluster_base: String,
    /// Time a client has to send a request's whole body once its head is in.
    pub body_timeout: Duration,
    /// Failed operator/sync-token authentications allowed per IP (refill/s, burst).
    pub auth_failure_rate: f64,
    pub auth_failure_burst: f64,
}

/// Addresses of the actors the ingress talks to.
#[derive(Clone)]
pub struct Peers {
    pub store: Addr<StoreActor>,
    pub auth: Addr<AuthActor>,
    pub dns: Addr<DnsActor>,
    pub supervisor: Addr<SupervisorActor>,
    pub sync: Addr<super::sync::SyncActor>,
    pub heartbeat: Option<Addr<super::heartbeat::HeartbeatActor>>,
    /// DNS answers for `/dns-query` (DNS over HTTPS).
    pub responder: Option<dns::Responder>,
    /// The operator audit trail (registrations, token and admin actions).
    pub audit: Arc<crate::files::audit::AuditLog>,
    /// What a reload changes under the running ingress (limits, TLS pair).
    pub hooks: crate::actors::http::hooks::Hooks,
    /// `/v1/watch/*` streams (None: the route answers 404).
    pub watch: Option<Addr<super::watch::WatchActor>>,
}

struct State {
    opts: HttpOptions,
    peers: Peers,
    ip_buckets: Mutex<TokenBuckets<IpAddr>>,
    reg_buckets: Mutex<TokenBuckets<IpAddr>>,
    requests: Mutex<HashMap<(&'static str, u16), u64>>,
    writes: Mutex<HashMap<&'static str, u64>>,
    auth_fails: Mutex<FailureThrottle>,
    /// Samples behind the status page's charts (the last hour).
    history: Mutex<crate::policy::charts::History>,
}

type Shared = web::Data<State>;

fn error(status: u16, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .json(json!({ "error": msg.into() }))
}

fn client_ip(req: &HttpRequest, st: &State) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    if st.opts.trusted_proxies.contains(&peer) {
        let h = req.headers();
        if let Some(ip) = h
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').map(str::trim).rev().find_map(|s| s.parse().ok()))
        {
            return Some(ip);
        }
        if let Some(ip) =
            h.get("x-real-ip").and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse().ok())
        {
            return Some(ip);
        }
    }
    Some(peer)
}

fn limited(req: &HttpRequest, st: &State, registration: bool) -> bool {
    let Some(ip) = client_ip(req, st) else {
        return false;
    };
    if ip.is_loopback() && !st.opts.limit_loopback {
        return false;
    }
    let l = st.peers.hooks.http_limits.load();
    if registration {
        !st.reg_buckets.lock().take(ip, l.registration_rate, l.registration_burst)
    } else {
        !st.ip_buckets.lock().take(ip, l.http_rate, l.http_burst)
    }
}

/// The client IP the failed-authentication throttle applies to (None: exempt loopback).
fn throttled_ip(req: &HttpRequest, st: &State) -> Option<IpAddr> {
    client_ip(req, st).filter(|ip| !ip.is_loopback() || st.opts.limit_loopback)
}

/// 429 when this client has used up its failed-authentication allowance (operator and
/// sync tokens). Checked before the token, so a guesser learns nothing while blocked.
fn auth_throttled(req: &HttpRequest, st: &State) -> Option<HttpResponse> {
    let ip = throttled_ip(req, st)?;
    (!st.auth_fails.lock().allowed(&ip, std::time::Instant::now())).then(|| {
        error(429, "too many failed authentication attempts from this address; retry later")
    })
}

/// Count a failed authentication against the client, and answer `status`.
fn auth_failed(req: &HttpRequest, st: &State, status: u16, msg: &str) -> HttpResponse {
    if let Some(ip) = throttled_ip(req, st) {
        st.auth_fails.lock().failed(ip, std::time::Instant::now());
    }
    error(status, msg)
}

fn auth_header(req: &HttpRequest) -> Option<String> {
    req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string)
}

async fn health(st: Shared) -> HttpResponse {
    match tokio::time::timeout(
        Duration::from_secs(2),
        st.peers.store.send(Get { name: "__dmp_health_probe__".into() }),
    )
    .await
    {
        Ok(Ok(Ok(_))) => HttpResponse::Ok().json(json!({"status": "ok"})),
        Ok(Ok(Err(e))) => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "degraded", "store": e.to_string()})),
        _ => HttpResponse::ServiceUnavailable()
            .json(json!({"status": "degraded", "store": "store actor not answering"})),
    }
}

async fn records_get(req: HttpRequest, path: web::Path<String>, st: Shared) -> HttpResponse {
    if limited(&req, &st, false) {
        return error(429, "rate limit exceeded");
    }
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !st.peers.auth.send(IsOperator(auth_header(&req))).await.unwrap_or(false) {
        return auth_failed(&req, &st, 401, "unauthorized");
    }
    let name = clean_name(&path).to_ascii_lowercase();
    match st.peers.store.send(Get { name: name.clone() }).await {
        Ok(Ok(vals)) if !vals.is_empty() => {
            let values: Vec<String> = vals.into_iter().map(|(v, _)| v).collect();
            HttpResponse::Ok().json(json!({"name": name, "values": values}))
        }
        Ok(Ok(_)) => HttpResponse::NotFound().json(json!({"name": name, "values": []})),
        _ => error(503, "store unavailable"),
    }
}

/// The reference's first checks of a write, in its order: per-IP limit (429), then
/// authorisation for this name and operation (401/429). Returns (name as sent, lower-cased).
/// The per-IP bucket, then the name as written and lower-cased.
async fn admit_write(
    req: &HttpRequest,
    st: &State,
    raw: &str,
) -> Result<(String, String), HttpResponse> {
    if limited(req, st, false) {
        return Err(error(429, "rate limit exceeded"));
    }
    let name = clean_name(raw);
    let lname = name.to_ascii_lowercase();
    Ok((name, lname))
}

/// Authorise a write of `lname` and apply `op` in one hop: the auth actor forwards the
/// batch to the store when the credential allows it. When the request itself is invalid
/// (`op` is the error response) it is only authorised, so a refusal (401/403/429) still
/// comes before a 400/413, as it always did.
async fn authorize_apply(
    req: &HttpRequest,
    st: &State,
    lname: &str,
    delete: bool,
    op: Result<Op, Refusal>,
    max_values: usize,
) -> Result<Option<Result<usize, StoreError>>, HttpResponse> {
    let op = match op {
        Ok(op) => op,
        Err((status, message)) => {
            authorize(req, st, lname, delete).await.map_err(|e| error(e.status, e.message))?;
            return Err(error(status, message));
        }
    };
    let apply = Apply { ops: vec![op], max_values, origin: Origin::Local };
    st.peers
        .auth
        .send(AuthorizeApply {
            authorization: auth_header(req),
            name: lname.to_string(),
            delete,
            apply,
            store: st.peers.store.clone(),
        })
        .await
        .unwrap_or_else(|_| {
            Err(auth::AuthError { status: 503, message: "auth unavailable".into() })
        })
        .map_err(|e| error(e.status, e.message))
}

/// `/v1/records/{name}` (or `pattern`): GET, POST and DELETE; other methods 404.
fn records_resource(pattern: &str) -> actix_web::Resource {
    web::resource(pattern)
        .route(web::get().to(records_get))
        .route(web::post().to(records_post))
        .route(web::delete().to(records_delete))
        .default_service(web::to(|| async { error(404, "not found") }))
}

/// A request refused before it reaches the store: status and message.
type Refusal = (u16, String);

/// The `Add` a publish request asks for, or why it is refused.
fn publish_op(st: &State, name: &str, lname: &str, body: &[u8]) -> Result<Op, Refusal> {
    if body.len() > st.opts.max_body_bytes {
        return Err((413, format!("body exceeds {} bytes", st.opts.max_body_bytes)));
    }
    let (value, ttl) = publish_body(body).map_err(|msg| (400, msg.to_string()))?;
    if ttl > st.opts.max_ttl {
        return Err((400, format!("ttl exceeds cap of {}s", st.opts.max_ttl)));
    }
    if value.len() > st.opts.max_value_bytes {
        return Err((400, format!("value exceeds cap of {} bytes", st.opts.max_value_bytes)));
    }
    if !valid_record_name(name) {
        return Err((400, "invalid record name".into()));
    }
    if !in_zone(lname, &st.opts.zone) {
        return Err((
            400,
            format!(
                "{name} is outside the zone {} this node serves: it would never be answered",
                st.opts.zone
            ),
        ));
    }
    if !valid_record_value(&value) {
        return Err((400, "invalid record value".into()));
    }
    Ok(Op::Add { name: lname.to_string(), value, ttl })
}

async fn records_post(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    st: Shared,
) -> HttpResponse {
    let (name, lname) = match admit_write(&req, &st, &path).await {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    let op = publish_op(&st, &name, &lname, &body);
    let max_values = st.opts.max_values_per_name;
    match authorize_apply(&req, &st, &lname, false, op, max_values).await {
        Err(resp) => resp,
        Ok(Some(Ok(_))) => {
            *st.writes.lock().entry("http_publish").or_insert(0) += 1;
            HttpResponse::Created().json(json!({"ok": true}))
        }
        Ok(Some(Err(StoreError::TooManyValues { name, max }))) => {
            error(413, format!("RRset at {name} already holds {max} values"))
        }
        Ok(Some(Err(e))) => {
            tracing::error!(error = %e, "publish failed");
            HttpResponse::BadGateway().json(json!({"ok": false, "error": e.to_string()}))
        }
        Ok(None) => {
            HttpResponse::BadGateway().json(json!({"ok": false, "error": "store unavailable"}))
        }
    }
}

/// The delete a request asks for, or why it is refused.
fn delete_op(st: &State, name: &str, lname: &str, body: &[u8]) -> Result<Op, Refusal> {
    if !valid_record_name(name) {
        return Err((400, "invalid record name".into()));
    }
    if body.len() > st.opts.max_body_bytes {
        return Err((413, format!("body exceeds {} bytes", st.opts.max_body_bytes)));
    }
    let value = delete_body(body).map_err(|msg| (400, msg.to_string()))?;
    if let Some(v) = &value {
        if !valid_record_value(v) {
            return Err((400, "invalid record value".into()));
        }
    }
    Ok(match value {
        Some(value) => Op::DeleteValue { name: lname.to_string(), value },
        None => Op::DeleteName { name: lname.to_string() },
    })
}

async fn records_delete(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    st: Shared,
) -> HttpResponse {
    let (name, lname) = match admit_write(&req, &st, &path).await {
        Ok(n) => n,
        Err(resp) => return resp,
    };
    let op = delete_op(&st, &name, &lname, &body);
    match authorize_apply(&req, &st, &lname, true, op, 0).await {
        Err(resp) => resp,
        Ok(Some(Ok(n))) if n > 0 => {
            *st.writes.lock().entry("http_delete").or_insert(0) += 1;
            HttpResponse::NoContent().finish()
        }
        Ok(Some(Ok(_))) => HttpResponse::NotFound().finish(),
        _ => HttpResponse::BadGateway().json(json!({"ok": false})),
    }
}

async fn authorize(
    req: &HttpRequest,
    st: &State,
    name: &str,
    delete: bool,
) -> Result<(), auth::AuthError> {
    st.peers
        .auth
        .send(AuthorizeWrite { authorization: auth_header(req), name: name.to_string(), delete })
        .await
        .unwrap_or_else(|_| {
            Err(auth::AuthError { status: 503, message: "auth unavailable".into() })
        })
}

async fn reg_challenge(req: HttpRequest, st: Shared) -> HttpResponse {
    if !req.query_string().is_empty() {
        return error(404, "not found");
    }
    if limited(&req, &st, true) {
        return error(429, "registration rate limit exceeded");
    }
    match st.peers.auth.send(NewChallenge).await {
        Ok(Ok(v)) => HttpResponse::Ok().json(v),
        Ok(Err(e)) => error(e.status, e.message),
        Err(_) => error(503, "auth unavailable"),
    }
}

async fn reg_confirm(req: HttpRequest, body: web::Bytes, st: Shared, tsig: bool) -> HttpResponse {
    if limited(&req, &st, true) {
        return error(429, "registration rate limit exceeded");
    }
    if body.len() > st.opts.max_body_bytes {
        return error(413, "body too large");
    }
    let v = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or(serde_json::Value::Null);
    match st.peers.auth.send(Register { body: v, tsig }).await {
        Ok(Ok(v)) => {
            let fields = json!({
                "subject": v["subject"],
                "credential": if tsig { "tsig" } else { "token" },
                "tsig_key_name": v.get("tsig_key_name"),
                "expires_at": v["expires_at"],
            });
            let remote = client_ip(&req, &st);
            if let Err(r) = ops::audit(&st, "registered", "self-service", remote, fields).await {
                return r;
            }
            HttpResponse::Ok().json(v)
        }
        Ok(Err(e)) => error(e.status, e.message),
        Err(_) => error(503, "auth unavailable"),
    }
}

/// Everything the status page and `/status.json` show.
async fn status_data(st: &State) -> serde_json::Value {
    let health = st.peers.supervisor.send(GetHealth).await.ok();
    let records = st.peers.store.send(Count).await.unwrap_or(0);
    let dns = st.peers.dns.send(GetStats).await.ok();
    json!({
        "node": st.opts.node_name,
        "zone": st.opts.zone,
        "version": st.opts.version,
        "uptime_secs": health.as_ref().map(|h| h.uptime_secs).unwrap_or(0),
        "records": records,
        "actors": health.map(|h| h.actors).unwrap_or_default(),
        "dns": dns,
        "cluster_peers": st.peers.sync.send(super::sync::GetSyncStats).await.unwrap_or_default(),
        "heartbeat_peers": heartbeat_peers(st).await,
    })
}

async fn heartbeat_peers(st: &State) -> Vec<super::heartbeat::PeerView> {
    match &st.peers.heartbeat {
        Some(h) => h.send(super::heartbeat::GetPeers).await.unwrap_or_default(),
        None => Vec::new(),
    }
}

async fn status_json(st: Shared) -> HttpResponse {
    HttpResponse::Ok().json(status_data(&st).await)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn status_page(st: Shared) -> HttpResponse {
    let d = status_data(&st).await;
    let charts = status::charts_html(&st).await;
    let arr = |k: &str| d[k].as_array().cloned().unwrap_or_default();
    let s = |v: &serde_json::Value| esc(v.as_str().unwrap_or(""));
    let mut actors = String::new();
    for a in arr("actors") {
        let ok = a["healthy"].as_bool().unwrap_or(false);
        actors.push_str(&format!(
            "<tr class=\"actor\"><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            s(&a["name"]),
            if ok { "ok" } else { "bad" },
            if ok { "healthy" } else { "down" },
            a["restarts"]
        ));
    }
    let mut cluster = String::new();
    for p in arr("cluster_peers") {
        cluster.push_str(&format!(
            "<tr class=\"peer\"><td>{}</td><td>{} s</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s(&p["peer"]),
            p["lag_secs"],
            p["records_pulled"],
            p["records_rejected"],
            s(&p["last_error"])
        ));
    }
    let mut hb = String::new();
    for p in arr("heartbeat_peers") {
        let up = p["up"].as_bool().unwrap_or(false);
        hb.push_str(&format!(
            "<tr class=\"peer\"><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{} s ago</td></tr>",
            s(&p["endpoint"]),
            s(&p["zone"]),
            s(&p["version"]),
            if up { "ok" } else { "bad" },
            if up { "up" } else { "down" },
            p["age_secs"]
        ));
    }
    let dns = &d["dns"];
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"10\"><title>dnsmesh node {zone}</title>\
         <style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{padding:.25em 1em;text-align:left;border-bottom:1px solid #ddd}}.ok{{color:#080}}.bad{{color:#c00}}\
         #charts{{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:1.5em}}</style>\
         </head><body><h1>dnsmesh node <span id=\"node\">{node}</span></h1>\
         <p>zone <b id=\"zone\">{zone}</b> · version {ver} · up {up} s · <span id=\"records\">{rec}</span> records · \
         {names} names in DNS · SOA serial {serial}</p>\
         <h2>Last hour</h2><div id=\"charts\">{charts}</div>\
         <h2>Actors</h2><table id=\"actors\"><tr><th>actor</th><th>state</th><th>restarts</th></tr>{actors}</table>\
         <h2>Cluster peers</h2><table id=\"cluster\"><tr><th>peer</th><th>sync lag</th><th>pulled</th><th>rejected</th><th>last error</th></tr>{cluster}</table>\
         <h2>Heartbeat peers</h2><table id=\"heartbeat\"><tr><th>endpoint</th><th>zone</th><th>version</th><th>state</th><th>last seen</th></tr>{hb}</table>\
         <p><a href=\"/status.json\">status.json</a> · <a href=\"/metrics\">metrics</a></p></body></html>",
        node = s(&d["node"]),
        zone = s(&d["zone"]),
        ver = s(&d["version"]),
        up = d["uptime_secs"],
        rec = d["records"],
        names = dns["names"],
        serial = dns["serial"],
    );
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .body(html)
}

async fn metrics(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !st.peers.auth.send(IsOperator(auth_header(&req))).await.unwrap_or(false) {
        if limited(&req, &st, false) {
            return error(429, "rate limit exceeded");
        }
        return auth_failed(&req, &st, 401, "unauthorized");
    }
    let mut out = String::new();
    out.push_str("# HELP dmp_http_requests_total HTTP requests by method and status.\n# TYPE dmp_http_requests_total counter\n");
    let mut reqs: Vec<_> = st.requests.lock().iter().map(|(k, v)| (*k, *v)).collect();
    reqs.sort();
    for ((m, s), v) in reqs {
        let m = esc_label(m);
        out.push_str(&format!("dmp_http_requests_total{{method=\"{m}\",status=\"{s}\"}} {v}\n"));
    }
    out.push_str("# HELP dmp_dns_queries_total DNS messages by outcome.\n# TYPE dmp_dns_queries_total counter\n");
    if let Ok(stats) = st.peers.dns.send(GetStats).await {
        for (k, v) in &stats.outcomes {
            let k = esc_label(k);
            out.push_str(&format!("dmp_dns_queries_total{{outcome=\"{k}\"}} {v}\n"));
        }
        out.push_str(
            "# HELP dmp_dns_response_seconds DNS response time (UDP batch-amortised; TCP/UPDATE per message).\n# TYPE dmp_dns_response_seconds histogram\n",
        );
        let mut cum = 0u64;
        let bounds = crate::dnswire::udp::LATENCY_BOUNDS_US;
        for (i, c) in stats.latency_buckets.iter().enumerate() {
            cum += c;
            let le = bounds
                .get(i)
                .map(|us| format!("{}", *us as f64 / 1e6))
                .unwrap_or_else(|| "+Inf".into());
            out.push_str(&format!("dmp_dns_response_seconds_bucket{{le=\"{le}\"}} {cum}\n"));
        }
        out.push_str(&format!(
            "dmp_dns_response_seconds_sum {}\ndmp_dns_response_seconds_count {cum}\n",
            stats.latency_sum_secs
        ));
        out.push_str(&format!("# HELP dmp_dns_names Names in the DNS read view.\n# TYPE dmp_dns_names gauge\ndmp_dns_names {}\n", stats.names));
        out.push_str(&format!(
            "# HELP dmp_dns_udp_threads UDP receive threads (all listen addresses).\n# TYPE dmp_dns_udp_threads gauge\ndmp_dns_udp_threads {}\n",
            stats.udp_thread_queries.len()
        ));
        out.push_str(&format!(
            "# HELP dmp_dns_view_from_image 1 when the DNS view was read from the view image the last graceful stop wrote, 0 when built from the store.\n# TYPE dmp_dns_view_from_image gauge\ndmp_dns_view_from_image {}\n",
            u8::from(stats.view_from_image)
        ));
        out.push_str("# HELP dmp_dns_udp_thread_queries_total Datagrams received per UDP thread.\n# TYPE dmp_dns_udp_thread_queries_total counter\n");
        for (i, q) in stats.udp_thread_queries.iter().enumerate() {
            out.push_str(&format!("dmp_dns_udp_thread_queries_total{{thread=\"{i}\"}} {q}\n"));
        }
    }
    out.push_str(
        "# HELP dmp_writes_total Acknowledged writes by path.\n# TYPE dmp_writes_total counter\n",
    );
    for (k, v) in st.writes.lock().iter() {
        let k = esc_label(k);
        out.push_str(&format!("dmp_writes_total{{path=\"{k}\"}} {v}\n"));
    }
    if let Ok(peers) = st.peers.sync.send(super::sync::GetSyncStats).await {
        for (metric, help, kind) in [
            ("dmp_sync_pulls_total", "Sync passes per peer.", "counter"),
            ("dmp_sync_records_pulled_total", "Records pulled per peer.", "counter"),
            ("dmp_sync_records_rejected_total", "Records refused per peer.", "counter"),
            ("dmp_sync_lag_seconds", "Seconds since the last complete pass per peer.", "gauge"),
        ] {
            out.push_str(&format!("# HELP {metric} {help}\n# TYPE {metric} {kind}\n"));
            for p in &peers {
                let v = match metric {
                    "dmp_sync_pulls_total" => p.pulls,
                    "dmp_sync_records_pulled_total" => p.records_pulled,
                    "dmp_sync_records_rejected_total" => p.records_rejected,
                    _ => p.lag_secs,
                };
                out.push_str(&format!("{metric}{{peer=\"{}\"}} {v}\n", esc_label(&p.peer)));
            }
        }
    }
    let hb = heartbeat_peers(&st).await;
    let up = hb.iter().filter(|p| p.up).count();
    out.push_str(&format!(
        "# HELP dmp_heartbeat_peers Heartbeat peers by state.\n# TYPE dmp_heartbeat_peers gauge\ndmp_heartbeat_peers{{state=\"up\"}} {up}\ndmp_heartbeat_peers{{state=\"down\"}} {}\n",
        hb.len() - up
    ));
    out.push_str("# HELP dmp_heartbeat_age_seconds Age of each peer's newest heartbeat.\n# TYPE dmp_heartbeat_age_seconds gauge\n");
    for p in &hb {
        out.push_str(&format!(
            "dmp_heartbeat_age_seconds{{endpoint=\"{}\"}} {}\n",
            esc_label(&p.endpoint),
            p.age_secs
        ));
    }
    let records = st.peers.store.send(Count).await.unwrap_or(0);
    out.push_str(&format!(
        "# HELP dmp_records Live records.\n# TYPE dmp_records gauge\ndmp_records {records}\n"
    ));
    let sz = st.peers.store.send(store::StoreSize).await.unwrap_or_default();
    out.push_str(&format!(
        "# HELP dmp_store_disk_bytes Bytes on disk under the data dir (every actor's database).\n# TYPE dmp_store_disk_bytes gauge\ndmp_store_disk_bytes {}\n# HELP dmp_store_live_bytes Names plus values of the records held.\n# TYPE dmp_store_live_bytes gauge\ndmp_store_live_bytes {}\n",
        sz.disk_bytes, sz.live_bytes
    ));
    out.push_str(&format!(
        "# HELP dmp_store_compactions_total Online compactions of the records database.\n# TYPE dmp_store_compactions_total counter\ndmp_store_compactions_total {}\n",
        sz.compactions
    ));
    if let Ok(h) = st.peers.supervisor.send(GetHealth).await {
        out.push_str("# HELP dmp_actor_restarts_total Actor restarts.\n# TYPE dmp_actor_restarts_total counter\n");
        for a in &h.actors {
            out.push_str(&format!(
                "dmp_actor_restarts_total{{actor=\"{}\"}} {}\n",
                esc_label(&a.name),
                a.restarts
            ));
        }
        out.push_str("# HELP dmp_actor_up Actor health (1 healthy).\n# TYPE dmp_actor_up gauge\n");
        for a in &h.actors {
            out.push_str(&format!(
                "dmp_actor_up{{actor=\"{}\"}} {}\n",
                esc_label(&a.name),
                a.healthy as u8
            ));
        }
    }
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(out)
}

async fn stats(st: Shared) -> HttpResponse {
    HttpResponse::Ok().json(json!({"records": st.peers.store.send(Count).await.unwrap_or(0)}))
}

async fn admin_list(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !is_configured_operator(&req, &st).await {
        return auth_failed(&req, &st, 401, "unauthorized: the operator token is required");
    }
    match st.peers.auth.send(auth::ListCredentials).await {
        Ok(v) => HttpResponse::Ok().json(v.0),
        Err(_) => error(503, "auth unavailable"),
    }
}

async fn admin_revoke(req: HttpRequest, body: web::Bytes, st: Shared) -> HttpResponse {
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !is_configured_operator(&req, &st).await {
        return auth_failed(&req, &st, 401, "unauthorized: the operator token is required");
    }
    let what = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("what").and_then(|w| w.as_str()).map(str::to_string));
    let Some(what) = what else {
        return error(400, "body must be {\"what\": \"subject|hash prefix|key name\"}");
    };
    match st.peers.auth.send(auth::Revoke(what.clone())).await {
        Ok(Ok(n)) => {
            let fields = json!({"what": what, "revoked": n});
            let remote = client_ip(&req, &st);
            if let Err(r) = ops::audit(&st, "revoked", "operator", remote, fields).await {
                return r;
            }
            HttpResponse::Ok().json(json!({"revoked": n}))
        }
        Ok(Err(e)) => error(e.status, e.message),
        Err(_) => error(503, "auth unavailable"),
    }
}

/// Admin routes need a real operator token (never open, even when none is set).
async fn is_configured_operator(req: &HttpRequest, st: &State) -> bool {
    auth_header(req).is_some()
        && st.peers.auth.send(auth::IsOperatorStrict(auth_header(req))).await.unwrap_or(false)
}

fn sync_authorized(req: &HttpRequest, st: &State) -> bool {
    let t = &st.opts.sync_token;
    !t.is_empty()
        && auth_header(req)
            .map(|h| auth::constant_time_eq(h.as_bytes(), format!("Bearer {t}").as_bytes()))
            .unwrap_or(false)
}

fn query_map(req: &HttpRequest) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

async fn sync_digest(req: HttpRequest, st: Shared) -> HttpResponse {
    if limited(&req, &st, false) {
        return error(429, "rate limit exceeded");
    }
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !sync_authorized(&req, &st) {
        return auth_failed(&req, &st, 403, "forbidden");
    }
    let q = query_map(&req);
    let cursor = if let Some(c) = q.get("cursor") {
        match crate::policy::replication::parse_cursor(c) {
            Some(c) => c,
            None => return error(400, "cursor must be '<ts>:<name>:<value_hash>'"),
        }
    } else if let Some(since) = q.get("since") {
        match since.parse::<i64>() {
            // Strictly after `since`: a name and hash that sort after every real one.
            Ok(v) if v >= 0 => (v as u64, "\u{ff}".to_string(), "g".to_string()),
            Ok(_) => return error(400, "since must be >= 0"),
            Err(_) => return error(400, "since must be an integer"),
        }
    } else {
        (0, String::new(), String::new())
    };
    let limit = match q.get("limit").map(|l| l.parse::<i64>()) {
        None => 1000,
        Some(Ok(l)) if l > 0 => (l as usize).min(10_000),
        Some(Ok(_)) => return error(400, "limit must be > 0"),
        Some(Err(_)) => return error(400, "limit must be an integer"),
    };
    let echo = format!("{}:{}:{}", cursor.0, cursor.1, cursor.2);
    match st.peers.store.send(store::Digest { after: cursor, limit }).await {
        Ok(Ok(page)) => {
            let next =
                page.rows.last().map(|r| format!("{}:{}:{}", r.ts, r.name, r.hash)).unwrap_or(echo);
            HttpResponse::Ok()
                .json(json!({"records": page.rows, "has_more": page.has_more, "next_cursor": next}))
        }
        _ => error(503, "store unavailable"),
    }
}

async fn sync_pull(req: HttpRequest, body: web::Bytes, st: Shared) -> HttpResponse {
    if limited(&req, &st, false) {
        return error(429, "rate limit exceeded");
    }
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !sync_authorized(&req, &st) {
        return auth_failed(&req, &st, 403, "forbidden");
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(400, "invalid body");
    };
    let Some(list) = v.get("names").and_then(|n| n.as_array()) else {
        return error(400, "names must be a list");
    };
    if list.len() > 256 {
        return error(400, "at most 256 names per request");
    }
    let mut names = Vec::with_capacity(list.len());
    for n in list {
        let Some(n) = n.as_str() else { return error(400, "names must be strings") };
        names.push(n.trim().trim_end_matches('.').to_ascii_lowercase());
    }
    match st.peers.store.send(store::Pull { names }).await {
        Ok(Ok(rows)) => {
            let records: Vec<_> = rows
                .into_iter()
                .map(|(name, value, ttl)| json!({"name": name, "value": value, "ttl": ttl}))
                .collect();
            HttpResponse::Ok().json(json!({ "records": records }))
        }
        _ => error(503, "store unavailable"),
    }
}

async fn sync_tombstones(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !sync_authorized(&req, &st) {
        return auth_failed(&req, &st, 403, "forbidden");
    }
    let q = query_map(&req);
    let Ok(after) = q.get("after").map(|a| a.parse::<u64>()).unwrap_or(Ok(0)) else {
        return error(400, "after must be an integer");
    };
    match st.peers.store.send(store::Tombstones { after_ms: after, limit: 10_000 }).await {
        Ok(Ok(rows)) => {
            let t: Vec<_> = rows
                .into_iter()
                .map(|(stamp, name, value, ttl)| json!({"stamp": stamp, "name": name, "value": value, "ttl": ttl}))
                .collect();
            HttpResponse::Ok().json(json!({ "tombstones": t }))
        }
        _ => error(503, "store unavailable"),
    }
}

async fn sync_notify(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !sync_authorized(&req, &st) {
        return auth_failed(&req, &st, 403, "forbidden");
    }
    st.peers.sync.do_send(super::sync::PullNow);
    HttpResponse::Accepted().json(json!({"ok": true}))
}

async fn sync_cluster_manifest(req: HttpRequest, st: Shared) -> HttpResponse {
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !sync_authorized(&req, &st) {
        return auth_failed(&req, &st, 403, "forbidden");
    }
    let (Some(spk), false) = (st.opts.operator_spk, st.opts.cluster_base.is_empty()) else {
        return HttpResponse::NoContent().finish();
    };
    let name = format!("cluster.{}", st.opts.cluster_base);
    let now = crate::clock::Clock::system().now_secs();
    let vals =
        st.peers.store.send(Get { name }).await.ok().and_then(|r| r.ok()).unwrap_or_default();
    let best = vals
        .into_iter()
        .filter_map(|(wire, _)| {
            crate::proto::records::cluster::ClusterManifest::parse_and_verify(
                &wire,
                &spk,
                Some(&st.opts.cluster_base),
                now,
            )
            .map(|m| (m, wire))
        })
        .max_by_key(|(m, _)| m.seq);
    match best {
        Some((m, wire)) => HttpResponse::Ok().json(
            json!({"wire": wire, "seq": m.seq, "exp": m.exp, "cluster_name": m.cluster_name}),
        ),
        None => HttpResponse::NoContent().finish(),
    }
}

async fn debug_fail(req: HttpRequest, path: web::Path<String>, st: Shared) -> HttpResponse {
    if !st.opts.fault_injection {
        return error(404, "not found");
    }
    if let Some(r) = auth_throttled(&req, &st) {
        return r;
    }
    if !is_configured_operator(&req, &st).await {
        return auth_failed(&req, &st, 401, "unauthorized");
    }
    match path.as_str() {
        "store" => st.peers.store.do_send(store::Fail),
        "dns" => st.peers.dns.do_send(dns::Fail),
        "auth" => st.peers.auth.do_send(auth::Fail),
        "sync" => st.peers.sync.do_send(super::sync::Fail),
        "heartbeat" => match &st.peers.heartbeat {
            Some(h) => h.do_send(super::heartbeat::Fail),
            None => return error(404, "heartbeat is not enabled"),
        },
        other => return error(404, format!("no actor named {other}")),
    }
    HttpResponse::Accepted().json(json!({"ok": true}))
}

/// DNS over HTTPS (RFC 8484), GET `?dns=` and POST `application/dns-message`
/// (module `doh`), behind the per-IP limit of the other routes (charged once, by the
/// ingress middleware: see `charged_here`).
async fn dns_query(req: HttpRequest, body: web::Bytes, st: Shared) -> HttpResponse {
    match (&st.peers.responder, client_ip(&req, &st)) {
        (Some(r), Some(ip)) => super::doh::handle(&req, &body, r, ip).await,
        _ => error(503, "dns unavailable"),
    }
}

pub(crate) fn tls_config(cert: &str, key: &str) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context as _;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading http.tls_cert {cert}"))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing http.tls_cert {cert}"))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading http.tls_key {key}"))?;
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("http.tls_cert / http.tls_key do not form a usable key pair")?;
    Ok(cfg)
}

/// Give the request's body a deadline (`[http] body_timeout_secs` from now): past it the
/// payload stream ends with an error, so a client that sends a head and then trickles or
/// stalls its body cannot hold a worker's connection. Returns the flag set on timeout.
fn with_body_deadline(
    req: &mut actix_web::dev::ServiceRequest,
    timeout: Duration,
) -> Arc<std::sync::atomic::AtomicBool> {
    use actix_web::HttpMessage as _;
    use futures_util::StreamExt as _;
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let has_body = req.headers().contains_key(actix_web::http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if !has_body {
        return flag;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let payload = req.take_payload();
    let f2 = flag.clone();
    let stream = futures_util::stream::unfold(Some(payload), move |state| {
        let flag = f2.clone();
        async move {
            let mut payload = state?;
            match tokio::time::timeout_at(deadline, payload.next()).await {
                Ok(Some(item)) => Some((item, Some(payload))),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "body read timeout");
                    Some((Err(actix_web::error::PayloadError::Io(e)), None))
                }
            }
        }
    });
    let boxed: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>,
    > = Box::pin(stream);
    req.set_payload(actix_web::dev::Payload::from(boxed));
    flag
}

/// Whether the ingress middleware charges this request to the per-IP bucket. Every request
/// is charged once: here, unless its handler does it itself (the write, read and sync
/// routes, in the reference's order: limit first, then authorisation; the registration
/// routes have their own bucket). Exempt: `GET /health` (a constant, cheap answer that
/// load balancers and operators poll, and which must keep answering during a flood);
/// `GET /metrics`, which is charged by its handler only when the operator token is
/// missing or wrong, so an operator's scraper is never throttled; and the other
/// `/v1/sync/*` routes, which answer only the cluster's token — a caller without it is
/// held by the failed-authentication throttle, and a peer's notify per write burst must
/// not be refused.
fn charged_here(req: &actix_web::dev::ServiceRequest) -> bool {
    use actix_web::http::Method;
    let m = req.method();
    let path = req.path();
    let handled = match (m, path) {
        (&Method::GET, "/v1/registration/challenge") => req.query_string().is_empty(),
        (
            &Method::GET,
            "/health"
            | "/metrics"
            | "/v1/sync/digest"
            | "/v1/sync/tombstones"
            | "/v1/sync/cluster-manifest",
        ) => true,
        (
            &Method::POST,
            "/v1/sync/pull"
            | "/v1/sync/notify"
            | "/v1/registration/confirm"
            | "/v1/registration/tsig-confirm",
        ) => true,
        (&Method::GET | &Method::POST | &Method::DELETE, p) => {
            p.strip_prefix("/v1/records/").is_some_and(|n| {
                let n = n.strip_suffix('/').unwrap_or(n);
                !n.is_empty() && !n.contains('/')
            })
        }
        _ => false,
    };
    !handled
}

/// `GET /v1/watch/mb-<hash12>`: Server-Sent Events naming the mailbox's slot and claim
/// records as they are created or removed (module `watch`). Public, like the names.
async fn watch(req: HttpRequest, path: web::Path<String>, st: Shared) -> HttpResponse {
    use super::watch::{valid_mailbox, WatchOpen, WatchRefused};
    let Some(w) = st.peers.watch.clone() else {
        return error(404, "not found");
    };
    let mailbox = path.into_inner().to_ascii_lowercase();
    if !valid_mailbox(&mailbox) {
        return error(400, "expected /v1/watch/mb-<12 hex digits>");
    }
    match w.send(WatchOpen { mailbox, ip: client_ip(&req, &st) }).await {
        Ok(Ok(stream)) => HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("cache-control", "no-cache"))
            .streaming(stream),
        Ok(Err(e @ WatchRefused::PerClient)) => error(429, e.to_string()),
        Ok(Err(e @ WatchRefused::Total)) => error(503, e.to_string()),
        Err(_) => error(503, "watch unavailable"),
    }
}

/// Bind and start the ingress. Returns the server (to stop it) and the bound address.
pub fn start(
    opts: HttpOptions,
    peers: Peers,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let tls_resolver = peers.hooks.tls.clone();
    let state = web::Data::new(State {
        ip_buckets: Mutex::new(TokenBuckets::new(10_000)),
        reg_buckets: Mutex::new(TokenBuckets::new(10_000)),
        requests: Mutex::new(HashMap::new()),
        writes: Mutex::new(HashMap::new()),
        auth_fails: Mutex::new(FailureThrottle::new(
            opts.auth_failure_rate,
            opts.auth_failure_burst,
            10_000,
        )),
        history: Mutex::new(Default::default()),
        opts: opts.clone(),
        peers,
    });
    let body_limit = opts.max_body_bytes * 4 + 1024;
    let body_timeout = opts.body_timeout;
    actix_rt::spawn(status::sampler(state.clone()));
    let st2 = state.clone();
    let factory = move || {
        let st3 = st2.clone();
        // Each worker builds its App when it starts serving (after the sockets are bound):
        // that, not the call to `start`, is when the HTTP ingress is up.
        st2.peers.supervisor.do_send(super::supervisor::Lifecycle {
            actor: "http",
            event: super::supervisor::LifecycleEvent::Started,
        });
        App::new()
            .app_data(st2.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            .wrap_fn(move |req, srv| {
                use actix_web::dev::Service;
                let method = method_label(req.method().as_str());
                let mut req = req;
                // HEAD is answered as GET (node.md §2.1): same route, status and headers;
                // the HTTP/1 encoder leaves the body out because the request was a HEAD.
                if req.method() == actix_web::http::Method::HEAD {
                    req.head_mut().method = actix_web::http::Method::GET;
                }
                let st4 = st3.clone();
                // Every route is charged to the client's per-IP bucket, 404s and made-up
                // methods included (see `charged_here`).
                let denied = charged_here(&req) && limited(req.request(), &st4, false);
                let body_timed_out = (!denied).then(|| with_body_deadline(&mut req, body_timeout));
                let call = if denied {
                    Err(req.into_response(error(429, "rate limit exceeded")))
                } else {
                    Ok(srv.call(req))
                };
                async move {
                    let mut res = match call {
                        Err(r) => r,
                        Ok(fut) => fut.await?.map_into_boxed_body(),
                    };
                    if body_timed_out.is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
                    {
                        // A slow or stalled body: 408, and the connection is closed.
                        let (r, _) = res.into_parts();
                        let mut resp = error(408, "request body not received in time");
                        resp.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
                        res = actix_web::dev::ServiceResponse::new(r, resp);
                    }
                    let status = status_label(res.status().as_u16());
                    *st4.requests.lock().entry((method, status)).or_insert(0) += 1;
                    Ok(res)
                }
            })
            .route("/", web::get().to(status_page))
            .route("/index.html", web::get().to(status_page))
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .route("/stats", web::get().to(stats))
            .route("/status.json", web::get().to(status_json))
            .route("/v1/registration/challenge", web::get().to(reg_challenge))
            .route(
                "/v1/registration/confirm",
                web::post().to(|r, b, s| reg_confirm(r, b, s, false)),
            )
            .route(
                "/v1/registration/tsig-confirm",
                web::post().to(|r, b, s| reg_confirm(r, b, s, true)),
            )
            // One resource per pattern with a route per method: the path's pattern (a
            // regex) is matched once, not once per method as with a resource per route
            // (that was ~5% of the node's CPU under HTTP writes). Another method answers
            // the 404 of the app's default, as before.
            .service(records_resource("/v1/records/{name}"))
            // A trailing slash is accepted, as the reference's route regex does.
            .service(records_resource("/v1/records/{name}/"))
            .route("/v1/sync/digest", web::get().to(sync_digest))
            .route("/v1/sync/pull", web::post().to(sync_pull))
            .route("/v1/sync/tombstones", web::get().to(sync_tombstones))
            .route("/v1/sync/notify", web::post().to(sync_notify))
            .route("/v1/sync/cluster-manifest", web::get().to(sync_cluster_manifest))
            .route("/v1/admin/credentials", web::get().to(admin_list))
            .route("/v1/admin/revoke", web::post().to(admin_revoke))
            .route("/v1/admin/tokens", web::post().to(ops::admin_tokens))
            .route("/v1/admin/audit", web::get().to(ops::admin_audit))
            .route("/v1/admin/backup", web::post().to(ops::admin_backup))
            .route("/v1/admin/reload", web::post().to(ops::admin_reload))
            .route("/debug/fail/{actor}", web::post().to(debug_fail))
            .route("/dns-query", web::route().to(dns_query))
            .route("/v1/watch/{mailbox}", web::get().to(watch))
            .default_service(web::to(|| async { error(404, "not found") }))
    };
    let mut server = HttpServer::new(factory)
        .shutdown_timeout(5)
        .client_request_timeout(opts.request_timeout)
        .client_disconnect_timeout(Duration::from_secs(2))
        .max_connections(opts.max_connections);
    if opts.workers > 0 {
        server = server.workers(opts.workers);
    }
    let server = match (&opts.tls, tls_resolver) {
        (Some(_), Some(resolver)) => {
            // The pair comes from a swappable resolver, so a reload changes it in place.
            let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
            server.bind_rustls_0_23(opts.listen, cfg)?
        }
        (Some((cert, key)), None) => {
            server.bind_rustls_0_23(opts.listen, tls_config(cert, key)?)?
        }
        (None, _) => server.bind(opts.listen)?,
    };
    let addr = server.addrs().first().copied().unwrap_or(opts.listen);
    Ok((server.run(), addr))
}
