//! Self-service registration helpers shared by the node and the CLI (protocol §2.3,
//! §11.4; node.md §3): subject canonicalisation, the signed payload, the X25519 proof of
//! possession, the TSIG key name and default scope, scope matching for DNS UPDATE, and
//! the HTTP write-scope classifier of multi-tenant mode.

use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::envelope::ldh_label;
use super::keys::{self, sha256_hex_prefix};
use super::names::mailbox_hash;
use super::ProtoError;

/// Registration protocol version byte that ends the signed payload.
const PROTOCOL_VERSION: u8 = 0x01;
/// Longest DNS label (the TSIG key name's first label must fit).
const MAX_LABEL: usize = 63;

/// Python's `str.isspace()`, which `str.strip()` trims: Unicode White_Space plus the
/// ASCII separators 0x1c..0x1f. Shared by every place that mirrors a reference `strip()`.
pub(crate) fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// `[a-z0-9][a-z0-9._+-]*@label(.label)+` with unbounded LDH labels (node.md §3.2).
fn subject_shape_ok(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let lb = local.as_bytes();
    let local_ok = lb.first().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && lb.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._+-".contains(c));
    local_ok && domain.contains('.') && domain.split('.').all(ldh_label)
}

/// Canonicalise a registration subject (node.md §3.2): NFKC, trim, lower-case, ASCII,
/// `local@fqdn` with at least two domain labels.
///
/// NFKC is the identity on ASCII, and everything non-ASCII left after trimming and
/// lower-casing is refused, so no Unicode normalisation crate is needed. The one
/// difference from the reference: input that only NFKC turns into ASCII (full-width
/// letters, ligatures) is refused here instead of being folded.
pub fn canonicalize_subject(raw: &str) -> Result<String, ProtoError> {
    let s = raw.trim_matches(py_space).to_lowercase();
    if s.is_empty() || !s.is_ascii() || !subject_shape_ok(&s) {
        return Err(ProtoError::field("subject", "not an ASCII <local>@<fqdn>"));
    }
    Ok(s)
}

/// The bytes a registrant signs: `challenge ‖ UTF-8(subject) ‖ UTF-8(node) ‖ 0x01`,
/// with the canonical subject and the `node` value from the challenge response.
pub fn signing_payload(challenge: &[u8; 32], subject: &str, node: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(33 + subject.len() + node.len());
    p.extend_from_slice(challenge);
    p.extend_from_slice(subject.as_bytes());
    p.extend_from_slice(node.as_bytes());
    p.push(PROTOCOL_VERSION);
    p
}

/// Client side: sign the registration payload with the user's Ed25519 key.
pub fn sign_registration(
    key: &SigningKey,
    challenge: &[u8; 32],
    subject: &str,
    node: &str,
) -> [u8; 64] {
    keys::sign(key, &signing_payload(challenge, subject, node))
}

/// Node side: verify a registration signature (low-order key blocklist applied, T20).
pub fn verify_registration(
    spk: &[u8],
    challenge: &[u8; 32],
    subject: &str,
    node: &str,
    signature: &[u8],
) -> bool {
    keys::verify(spk, &signing_payload(challenge, subject, node), signature)
}

/// The proof-of-possession MAC over an agreed X25519 shared secret:
/// `HMAC-SHA256(shared, challenge ‖ UTF-8(subject) ‖ user_x25519_pub)`.
fn pop_mac(
    shared: &[u8; 32],
    challenge: &[u8; 32],
    subject: &str,
    user_pub: &[u8; 32],
) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(shared).expect("HMAC takes any key length");
    mac.update(challenge);
    mac.update(subject.as_bytes());
    mac.update(user_pub);
    mac
}

/// Client side: prove possession of the X25519 key whose private bytes are `user_priv`
/// against the challenge's ephemeral `server_pub`. `None` when the shared secret is all
/// zeros (a low-order server key).
pub fn x25519_pop(
    user_priv: &[u8; 32],
    server_pub: &[u8; 32],
    challenge: &[u8; 32],
    subject: &str,
) -> Option<[u8; 32]> {
    let shared = keys::x25519(user_priv, server_pub)?;
    let user_pub = keys::x25519_public(user_priv);
    Some(pop_mac(&shared, challenge, subject, &user_pub).finalize().into_bytes().into())
}

/// Node side: check a proof of possession in constant time with the challenge's
/// ephemeral private key. False for a wrong length, a wrong MAC or a low-order `user_pub`.
pub fn verify_x25519_pop(
    server_priv: &[u8; 32],
    user_pub: &[u8; 32],
    challenge: &[u8; 32],
    subject: &str,
    pop: &[u8],
) -> bool {
    let Some(shared) = keys::x25519(server_priv, user_pub) else {
        return false;
    };
    pop_mac(&shared, challenge, subject, user_pub).verify_slice(pop).is_ok()
}

/// Owner-name normalisation of scopes and UPDATE owners: lower-case, trailing dots gone.
fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_lowercase()
}

fn local_part(subject: &str) -> String {
    subject.split_once('@').map_or(subject, |(l, _)| l).to_lowercase()
}

/// TSIG key name minted for a canonical subject: `<local>-<spk_hex[:8]>-<sha256hex(subject)[:6]>.<zone>.`
/// (lower-case). Errors when the first label exceeds 63 bytes (local part over 47).
pub fn tsig_key_name(subject: &str, spk: &[u8; 32], zone: &str) -> Result<String, ProtoError> {
    let spk_hex = hex::encode(spk);
    let label = format!(
        "{}-{}-{}",
        local_part(subject),
        &spk_hex[..8],
        sha256_hex_prefix(subject.as_bytes(), 6)
    );
    if label.len() > MAX_LABEL {
        return Err(ProtoError::field("subject", "local part too long for a TSIG key label"));
    }
    Ok(format!("{label}.{}.", norm(zone)))
}

/// Which default scope a minted TSIG key gets (node settings `DMP_TSIG_*_SCOPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScopeMode {
    /// Owner names plus the shared wildcard pools.
    #[default]
    Default,
    /// `DMP_TSIG_TIGHT_SCOPE=1`: owner names only, no wildcard entries.
    Tight,
    /// `DMP_TSIG_LOOSE_SCOPE=1`: the whole zone.
    Loose,
}

/// The `allowed_suffixes` of a newly minted key, in the reference's order (the HTTP
/// response sorts them). `x25519_pub` is the registrant's key **only when its proof of
/// possession verified**; it adds the mailbox `mb-<H12>` scope.
pub fn default_scope(
    subject: &str,
    spk: &[u8; 32],
    x25519_pub: Option<&[u8; 32]>,
    zone: &str,
    mode: ScopeMode,
) -> Vec<String> {
    let z = norm(zone);
    if mode == ScopeMode::Loose {
        return vec![z];
    }
    let lp = local_part(subject);
    let spk16 = &hex::encode(spk)[..16];
    let mut s = vec![
        format!("id-{}.{z}", sha256_hex_prefix(lp.as_bytes(), 16)),
        format!("id-{}.{z}", sha256_hex_prefix(lp.as_bytes(), 12)),
        format!("_dnsmesh-claim-{spk16}.{z}"),
    ];
    if mode == ScopeMode::Default {
        for w in ["_dnsmesh-claim-*", "slot-*.mb-*", "chunk-*-*", "claim-*.mb-*"] {
            s.push(format!("{w}.{z}"));
        }
    }
    if let Some(xpub) = x25519_pub {
        s.push(format!("mb-{}.{z}", mailbox_hash(&keys::user_id(xpub))));
    }
    s
}

/// Glob one label: `*` matches any run (possibly empty) of characters.
fn label_glob(pattern: &[u8], label: &[u8]) -> bool {
    let (mut p, mut l) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while l < label.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, l));
                p += 1;
            }
            Some(c) if *c == label[l] => {
                p += 1;
                l += 1;
            }
            _ => match star {
                Some((sp, sl)) => {
                    p = sp + 1;
                    l = sl + 1;
                    star = Some((sp, sl + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|c| *c == b'*')
}

/// Does one scope suffix cover `owner`? Names compare lower-cased without trailing dots.
/// Without `*`: the owner equals the suffix or ends with `.` + suffix. With `*`: labels
/// compared right-aligned, each `*` matching ≥ 0 characters inside one label; the owner
/// may have extra leading labels.
pub fn suffix_covers(suffix: &str, owner: &str) -> bool {
    let (suffix, owner) = (norm(suffix), norm(owner));
    if suffix.is_empty() || owner.is_empty() {
        return false;
    }
    if !suffix.contains('*') {
        return owner == suffix || owner.ends_with(&format!(".{suffix}"));
    }
    let pat: Vec<&str> = suffix.split('.').collect();
    let own: Vec<&str> = owner.split('.').collect();
    own.len() >= pat.len()
        && pat
            .iter()
            .rev()
            .zip(own.iter().rev())
            .all(|(p, o)| label_glob(p.as_bytes(), o.as_bytes()))
}

/// How a key's scope covers an owner name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// No suffix matches: refuse every operation.
    None,
    /// Only wildcard suffixes match: adds allowed, deletes refused.
    WildcardOnly,
    /// A suffix without `*` matches: adds and deletes allowed.
    Exact,
}

impl Coverage {
    /// May an add (`delete = false`) or a delete (`delete = true`) go through?
    pub fn allows(self, delete: bool) -> bool {
        match self {
            Coverage::None => false,
            Coverage::WildcardOnly => !delete,
            Coverage::Exact => true,
        }
    }
}

/// Classify how `suffixes` cover `owner`; deletes need [`Coverage::Exact`] (node.md §3.5).
pub fn coverage<S: AsRef<str>>(suffixes: &[S], owner: &str) -> Coverage {
    let mut found = Coverage::None;
    for s in suffixes.iter().map(AsRef::as_ref) {
        if suffix_covers(s, owner) {
            if !s.contains('*') {
                return Coverage::Exact;
            }
            found = Coverage::WildcardOnly;
        }
    }
    found
}

/// Who may write a name over HTTP in multi-tenant mode (node.md §3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameClass {
    /// Malformed (characters outside `[a-z0-9.-]`, empty labels, no dot): rejected.
    Unknown,
    /// Only the operator token may write.
    OperatorOnly,
    /// `slot-<n>.mb-<h12>.<d>` / `chunk-<n>-<h12>.<d>`: any live token may publish;
    /// only the operator may delete.
    SharedPool,
    /// `dmp.<user>.<d>` or `rotate.dmp.<user>.<d>`: only the token of this subject.
    OwnerSubject(String),
    /// `id-<hash16>.<d>`: the subject whose `sha256hex(local)[:16]` and domain match.
    OwnerIdentityHash { hash16: String, domain: String },
    /// `prekeys.id-<hash12>.<d>`: as above with 12 hex.
    OwnerPrekeyPool { hash12: String, domain: String },
    /// `pk-<n>.<hash12>.<d>`: the token whose admin-set `subject_hash12` equals it.
    OwnerPrekeyHash(String),
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A domain of at least two LDH labels of ≤ 63 bytes.
fn domain2(labels: &[&str]) -> Option<String> {
    (labels.len() >= 2 && labels.iter().all(|l| l.len() <= MAX_LABEL && ldh_label(l)))
        .then(|| labels.join("."))
}

/// Classify a record name for HTTP writes (lower-cased, trailing dots ignored).
pub fn classify_name(name: &str) -> NameClass {
    let n = name.to_lowercase();
    let n = n.trim_end_matches('.');
    if n.is_empty()
        || !n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        || !n.contains('.')
    {
        return NameClass::Unknown;
    }
    let l: Vec<&str> = n.split('.').collect();
    if l.iter().any(|x| x.is_empty()) {
        return NameClass::Unknown;
    }
    let user = |x: &str| x.len() <= MAX_LABEL && ldh_label(x);
    let tail = |i: usize| l.get(i..).and_then(domain2);
    let first = l[0];
    if first == "dmp" && user(l[1]) {
        if let Some(d) = tail(2) {
            return NameClass::OwnerSubject(format!("{}@{d}", l[1]));
        }
    }
    if let Some(h) = first.strip_prefix("id-").filter(|h| is_hex(h, 16)) {
        if let Some(domain) = tail(1) {
            return NameClass::OwnerIdentityHash { hash16: h.to_string(), domain };
        }
    }
    if first == "prekeys" {
        if let (Some(h), Some(domain)) =
            (l[1].strip_prefix("id-").filter(|h| is_hex(h, 12)), tail(2))
        {
            return NameClass::OwnerPrekeyPool { hash12: h.to_string(), domain };
        }
    }
    // `rotate.id-<hash16>.<d>`: the owner's rotation/revocation RRset. The reference leaves
    // it operator-only, so a user with an HTTP token cannot rotate; the records are signed
    // by the old key and verified by every reader, so letting the owner write them gives
    // no one else anything.
    if first == "rotate" {
        if let (Some(h), Some(domain)) =
            (l[1].strip_prefix("id-").filter(|h| is_hex(h, 16)), tail(2))
        {
            return NameClass::OwnerIdentityHash { hash16: h.to_string(), domain };
        }
    }
    if first == "rotate" && l[1] == "dmp" && l.len() > 2 {
        if l[2].strip_prefix("id-").is_some_and(|h| is_hex(h, 12)) && tail(3).is_some() {
            return NameClass::OperatorOnly;
        }
        if let (true, Some(d)) = (user(l[2]), tail(3)) {
            return NameClass::OwnerSubject(format!("{}@{d}", l[2]));
        }
    }
    if first.strip_prefix("pk-").is_some_and(is_digits) && is_hex(l[1], 12) && tail(2).is_some() {
        return NameClass::OwnerPrekeyHash(l[1].to_string());
    }
    let slot = first.strip_prefix("slot-").is_some_and(is_digits)
        && l[1].strip_prefix("mb-").is_some_and(|h| is_hex(h, 12))
        && tail(2).is_some();
    let chunk = first
        .strip_prefix("chunk-")
        .and_then(|r| r.split_once('-'))
        .is_some_and(|(n, h)| is_digits(n) && is_hex(h, 12))
        && tail(1).is_some();
    if slot || chunk {
        return NameClass::SharedPool;
    }
    NameClass::OperatorOnly
}

impl NameClass {
    /// Does the token of canonical `subject` (with its admin-set `subject_hash12`, if
    /// any) own this name? Only owner-exclusive classes can be owned.
    pub fn owned_by(&self, subject: &str, subject_hash12: Option<&str>) -> bool {
        let (local, domain) = subject.split_once('@').unwrap_or((subject, ""));
        match self {
            NameClass::OwnerSubject(s) => s == subject,
            NameClass::OwnerIdentityHash { hash16, domain: d } => {
                *hash16 == sha256_hex_prefix(local.as_bytes(), 16) && d == domain
            }
            NameClass::OwnerPrekeyPool { hash12, domain: d } => {
                *hash12 == sha256_hex_prefix(local.as_bytes(), 12) && d == domain
            }
            NameClass::OwnerPrekeyHash(h) => subject_hash12 == Some(h.as_str()),
            NameClass::Unknown | NameClass::OperatorOnly | NameClass::SharedPool => false,
        }
    }
}

/// Which names of the served zone a subject may hold, given the zone and the subject
/// domains treated as it (`[auth] zone_aliases`).
///
/// Names derived from a local part (`id-<hash>.<zone>` and everything below it:
/// identity, prekey pool, rotation; `dmp.<user>.<zone>`) identify a user *of this
/// zone*. The reference derives them from the local part alone, so `alice@evil.example`
/// would get the same names as `alice@<zone>`. Here only a **local** subject — one whose
/// domain is the zone or an alias — holds them, and only its own. A foreign subject keeps
/// what does not depend on its local part: the shared mailbox pools (sending to users
/// here), its own mailbox `mb-<hash>` and its `_dnsmesh-claim-<spk16>` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPolicy {
    zone: String,
    aliases: Vec<String>,
}

/// What part of the zone's local-part names a scope suffix can cover.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdReach {
    /// No `id-…` name of the zone.
    Nothing,
    /// Only names at or below this one `id-…` label.
    Label(String),
    /// Possibly any of them (the apex, or a wildcard that can match an `id-` label).
    Any,
}

/// Can the one-label glob `pattern` match some label that starts with `id-`?
fn glob_may_match_id(pattern: &str) -> bool {
    let p = pattern.as_bytes();
    for (i, c) in b"id-".iter().enumerate() {
        match p.get(i) {
            Some(b'*') => return true,
            Some(x) if x == c => {}
            _ => return false,
        }
    }
    true
}

/// Is `name` the zone itself or below it (both normalised)?
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.strip_suffix(zone).is_some_and(|h| h.ends_with('.'))
}

impl SubjectPolicy {
    /// The policy of `zone` with extra subject `aliases` (normalised here: lower-case,
    /// no trailing dot; empty entries ignored).
    pub fn new<S: AsRef<str>>(zone: &str, aliases: &[S]) -> Self {
        let aliases =
            aliases.iter().map(|a| norm(a.as_ref().trim())).filter(|a| !a.is_empty()).collect();
        SubjectPolicy { zone: norm(zone), aliases }
    }

    /// The served zone (normalised).
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Is `subject` a user of this zone: its domain is the zone or one of its aliases?
    pub fn is_local(&self, subject: &str) -> bool {
        let Some((_, domain)) = subject.split_once('@') else {
            return false;
        };
        let d = norm(domain);
        d == self.zone || self.aliases.contains(&d)
    }

    /// The `id-` labels a subject's local part owns in this zone (16 and 12 hex), or none
    /// for a foreign subject.
    fn own_id_labels(&self, subject: &str) -> Option<[String; 2]> {
        if !self.is_local(subject) {
            return None;
        }
        let lp = local_part(subject);
        Some([
            format!("id-{}", sha256_hex_prefix(lp.as_bytes(), 16)),
            format!("id-{}", sha256_hex_prefix(lp.as_bytes(), 12)),
        ])
    }

    fn id_reach(&self, suffix: &str) -> IdReach {
        let s = norm(suffix);
        let zl: Vec<&str> = self.zone.split('.').collect();
        if !s.contains('*') {
            // An ancestor of the zone (or the zone itself) covers all of it.
            if self.zone == s || self.zone.ends_with(&format!(".{s}")) {
                return IdReach::Any;
            }
            if !in_zone(&s, &self.zone) {
                return IdReach::Nothing;
            }
            let sl: Vec<&str> = s.split('.').collect();
            let x = sl[sl.len() - zl.len() - 1];
            return if x.starts_with("id-") {
                IdReach::Label(x.to_string())
            } else {
                IdReach::Nothing
            };
        }
        let pl: Vec<&str> = s.split('.').collect();
        let zone_ok = pl
            .iter()
            .rev()
            .zip(zl.iter().rev())
            .all(|(p, z)| label_glob(p.as_bytes(), z.as_bytes()));
        if !zone_ok {
            return IdReach::Nothing;
        }
        if pl.len() <= zl.len() {
            return IdReach::Any;
        }
        let x = pl[pl.len() - zl.len() - 1];
        if x.contains('*') {
            if glob_may_match_id(x) {
                IdReach::Any
            } else {
                IdReach::Nothing
            }
        } else if x.starts_with("id-") {
            IdReach::Label(x.to_string())
        } else {
            IdReach::Nothing
        }
    }

    /// The part of a TSIG `scope` that `subject` may hold: every suffix that can cover a
    /// local-part name of this zone other than the subject's own (all of them for a
    /// foreign subject) is dropped. Applied when a key is minted and again whenever the
    /// keyring is built, so keys stored by older versions lose what they should not have.
    pub fn restrict_scope<S: AsRef<str>>(&self, subject: &str, scope: &[S]) -> Vec<String> {
        let own = self.own_id_labels(subject);
        scope
            .iter()
            .map(AsRef::as_ref)
            .filter(|s| match self.id_reach(s) {
                IdReach::Nothing => true,
                IdReach::Label(l) => own.as_ref().is_some_and(|o| o.contains(&l)),
                IdReach::Any => false,
            })
            .map(str::to_string)
            .collect()
    }

    /// The scope a newly registered TSIG key gets: [`default_scope`] restricted by
    /// [`SubjectPolicy::restrict_scope`]. (`ScopeMode::Loose`, the whole zone, reaches every
    /// user's names and so comes out empty; the node never mints it.)
    pub fn scope_for(
        &self,
        subject: &str,
        spk: &[u8; 32],
        x25519_pub: Option<&[u8; 32]>,
        mode: ScopeMode,
    ) -> Vec<String> {
        self.restrict_scope(subject, &default_scope(subject, spk, x25519_pub, &self.zone, mode))
    }

    /// Is `owner` a name of this zone derived from a local part (`id-…` directly below the
    /// apex, or `dmp.<user>.<zone>` / `rotate.dmp.<user>.<zone>`), which a foreign subject
    /// may never hold?
    pub fn is_local_part_name(&self, owner: &str) -> bool {
        let o = norm(owner);
        if o == self.zone || !in_zone(&o, &self.zone) {
            return false;
        }
        let head = &o[..o.len() - self.zone.len() - 1];
        let hl: Vec<&str> = head.split('.').collect();
        hl.last().is_some_and(|x| x.starts_with("id-"))
            || matches!(hl.as_slice(), ["dmp", _] | ["rotate", "dmp", _])
    }

    /// HTTP write scope (node.md §3.7) with the zone rule: may the token of `subject` write
    /// the owner-exclusive name of class `class`? Inside the zone, local-part names belong
    /// only to local subjects (an alias subject `alice@<alias>` is `alice@<zone>`); outside
    /// it the reference rule ([`NameClass::owned_by`]) is unchanged.
    pub fn owns(&self, class: &NameClass, subject: &str, subject_hash12: Option<&str>) -> bool {
        let domain_of = |c: &NameClass| match c {
            NameClass::OwnerSubject(s) => s.split_once('@').map(|(_, d)| d.to_string()),
            NameClass::OwnerIdentityHash { domain, .. }
            | NameClass::OwnerPrekeyPool { domain, .. } => Some(domain.clone()),
            _ => None,
        };
        match domain_of(class) {
            Some(d) if in_zone(&d, &self.zone) => {
                if d != self.zone || !self.is_local(subject) {
                    return false;
                }
                // Judge as the subject's zone form, so an alias subject owns its names here.
                let as_zone = format!("{}@{}", local_part(subject), self.zone);
                class.owned_by(&as_zone, subject_hash12)
            }
            _ => class.owned_by(subject, subject_hash12),
        }
    }

    /// Why `subject` may not hold `owner`, when that is the zone rule (for a clear 403).
    pub fn refusal(&self, subject: &str, owner: &str) -> Option<String> {
        (!self.is_local(subject) && self.is_local_part_name(owner)).then(|| {
            format!(
                "forbidden: {owner} is a user name of zone {}, and subject {subject} is not a \
                 user of this zone (its domain is neither the zone nor one of [auth] zone_aliases)",
                self.zone
            )
        })
    }
}

/// Why a registration must be refused because its local part is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingConflict {
    /// The same subject has a live credential under another key.
    SameSubject,
    /// Another subject with the same local part (any domain) has a live credential under
    /// another key.
    SameLocalPart,
}

/// Does registering `subject` with key `spk_hex` clash with the live self-service
/// credentials `bound` (each `(subject, registered_spk hex)`)? One local part is bound to
/// one key on a node, whatever the subject's domain; the same key may re-register.
pub fn binding_conflict<'a>(
    subject: &str,
    spk_hex: &str,
    bound: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Option<BindingConflict> {
    let lp = local_part(subject);
    let mut found = None;
    for (s, k) in bound {
        if k.is_empty() || k.eq_ignore_ascii_case(spk_hex) {
            continue;
        }
        if s == subject {
            return Some(BindingConflict::SameSubject);
        }
        if local_part(s) == lp {
            found = Some(BindingConflict::SameLocalPart);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        let c = |s: &str| canonicalize_subject(s).ok();
        assert_eq!(c("  Alice@Mesh.Example.COM \n").as_deref(), Some("alice@mesh.example.com"));
        assert_eq!(c("\x1calice@b.com\u{3000}").as_deref(), Some("alice@b.com"));
        assert_eq!(
            c("\u{212a}im@b.com").as_deref(),
            Some("kim@b.com"),
            "Kelvin sign lower-cases to k"
        );
        assert_eq!(c("a+b.c-d_e@x.y").as_deref(), Some("a+b.c-d_e@x.y"));
        assert_eq!(c("a..b@b.com").as_deref(), Some("a..b@b.com"));
        for bad in [
            "alice@com",
            "_a@b.com",
            "-a@b.com",
            "alice@b.com.",
            "alice@b-.com",
            "alice@b..com",
            "a@b@c.com",
            "",
            "@b.com",
            "alice\n@b.com",
        ] {
            assert_eq!(c(bad), None, "{bad:?}");
        }
        assert_eq!(
            c("\u{ff41}lice@b.com"),
            None,
            "full-width: NFKC-only ASCII is refused (documented)"
        );
    }

    #[test]
    fn key_name_limit() {
        let spk = [0xab; 32];
        let at = |n: usize| tsig_key_name(&format!("{}@z.com", "a".repeat(n)), &spk, "z.com");
        assert_eq!(at(47).unwrap().split('.').next().unwrap().len(), 63);
        assert!(at(48).is_err());
    }

    #[test]
    fn classifier() {
        let h12 = "2bd806c97f0e";
        let h16 = "2bd806c97f0e00af";
        let owner = |s: &str| NameClass::OwnerSubject(s.into());
        let table = [
            ("DMP.Alice.Example.COM..".to_string(), owner("alice@example.com")),
            ("dmp.alice.com".into(), NameClass::OperatorOnly),
            ("dmp.a_b.example.com".into(), NameClass::Unknown),
            (
                format!("id-{h16}.example.com"),
                NameClass::OwnerIdentityHash { hash16: h16.into(), domain: "example.com".into() },
            ),
            (format!("id-{h12}.example.com"), NameClass::OperatorOnly),
            (
                format!("prekeys.id-{h12}.a.com"),
                NameClass::OwnerPrekeyPool { hash12: h12.into(), domain: "a.com".into() },
            ),
            (format!("rotate.dmp.id-{h12}.a.com"), NameClass::OperatorOnly),
            (format!("rotate.dmp.id-{h16}.a.com"), owner(&format!("id-{h16}@a.com"))),
            ("rotate.dmp.bob.a.com".into(), owner("bob@a.com")),
            (
                format!("rotate.id-{h16}.a.com"),
                NameClass::OwnerIdentityHash { hash16: h16.into(), domain: "a.com".into() },
            ),
            (format!("rotate.id-{h12}.a.com"), NameClass::OperatorOnly),
            (format!("pk-01.{h12}.a.com"), NameClass::OwnerPrekeyHash(h12.into())),
            (format!("slot-33.mb-{h12}.a.com."), NameClass::SharedPool),
            (format!("slot-3.mb-{h12}.com"), NameClass::OperatorOnly),
            (format!("chunk-1-{h12}.a.com"), NameClass::SharedPool),
            (format!("claim-1.mb-{h12}.a.com"), NameClass::OperatorOnly),
            ("a.com..".into(), NameClass::OperatorOnly),
            ("a..b.com".into(), NameClass::Unknown),
            ("com".into(), NameClass::Unknown),
            ("..".into(), NameClass::Unknown),
            ("_dmp.example.com".into(), NameClass::Unknown),
        ];
        for (name, want) in table {
            assert_eq!(classify_name(&name), want, "{name}");
        }
        let pk = classify_name(&format!("pk-1.{h12}.a.com"));
        assert!(pk.owned_by("x@a.com", Some(h12)) && !pk.owned_by("x@a.com", None));
    }

    #[test]
    fn scope_matching() {
        let sufs = [
            "id-abc.mesh.test",
            "slot-*.mb-*.mesh.test",
            "chunk-*-*.mesh.test",
            "Mb-Abc.Mesh.Test.",
        ];
        let table = [
            ("ID-ABC.mesh.test.", Coverage::Exact),
            ("x.id-abc.mesh.test", Coverage::Exact),
            ("xid-abc.mesh.test", Coverage::None),
            ("slot-.mb-.mesh.test", Coverage::WildcardOnly),
            ("a.slot-1.mb-def.mesh.test", Coverage::WildcardOnly),
            ("slot-1.mb-abc.mesh.test..", Coverage::Exact),
            ("slot-1.mb-def.x.mesh.test", Coverage::None),
            ("chunk--.mesh.test", Coverage::WildcardOnly),
            ("chunk-0001.mesh.test", Coverage::None),
            ("mesh.test", Coverage::None),
            ("", Coverage::None),
            (".", Coverage::None),
        ];
        for (owner, want) in table {
            assert_eq!(coverage(&sufs, owner), want, "{owner}");
        }
    }

    #[test]
    fn foreign_subjects_get_no_local_part_scope() {
        let p = SubjectPolicy::new("mesh.test", &["Alias.Test."]);
        assert!(p.is_local("alice@mesh.test") && p.is_local("alice@alias.test"));
        assert!(!p.is_local("alice@evil.example") && !p.is_local("alice@sub.mesh.test"));
        let spk = [7u8; 32];
        let xpub = [8u8; 32];
        let home =
            default_scope("alice@mesh.test", &spk, Some(&xpub), "mesh.test", ScopeMode::Default);
        // A local subject keeps the reference scope unchanged, an alias subject too.
        assert_eq!(p.scope_for("alice@mesh.test", &spk, Some(&xpub), ScopeMode::Default), home);
        assert_eq!(p.scope_for("alice@alias.test", &spk, Some(&xpub), ScopeMode::Default), home);
        // A foreign one loses exactly the two id- suffixes.
        let evil = p.scope_for("alice@evil.example", &spk, Some(&xpub), ScopeMode::Default);
        let want: Vec<String> = home.iter().filter(|s| !s.starts_with("id-")).cloned().collect();
        assert_eq!(evil, want);
        assert_eq!(evil.len(), home.len() - 2);
        let id16 = names_for("alice", 16);
        let pk = format!("prekeys.{}.mesh.test", names_for("alice", 12));
        for owner in [format!("{id16}.mesh.test"), pk.clone()] {
            assert_eq!(coverage(&home, &owner), Coverage::Exact, "{owner}");
            assert_eq!(coverage(&evil, &owner), Coverage::None, "{owner}");
        }
        // What a foreign subject still may do: send to users here, its own mailbox/claim.
        for owner in ["slot-1.mb-0123456789ab.mesh.test", "claim-1.mb-0123456789ab.mesh.test"] {
            assert_eq!(coverage(&evil, owner), Coverage::WildcardOnly, "{owner}");
        }
        let own_mb = format!("slot-1.mb-{}.mesh.test", mailbox_hash(&keys::user_id(&xpub)));
        assert_eq!(coverage(&evil, &own_mb), Coverage::Exact);
        assert_eq!(coverage(&evil, "_dnsmesh-claim-0707070707070707.mesh.test"), Coverage::Exact);
        // Stored scopes (keys minted by older versions, odd shapes) are filtered too.
        let stored = [
            "mesh.test",
            "test",
            "*.test",
            "*.mesh.test",
            "i*.mesh.test",
            "id-*.mesh.test",
            "x.*.mesh.test",
            "prekeys.id-0123456789ab.mesh.test",
            "slot-*.mb-*.mesh.test",
            "mb-0123456789ab.mesh.test",
            "other.example",
        ];
        let keep = ["slot-*.mb-*.mesh.test", "mb-0123456789ab.mesh.test", "other.example"];
        assert_eq!(p.restrict_scope("alice@evil.example", &stored), keep);
        // A local subject keeps only its own id- labels, never another user's.
        let mine = [format!("{id16}.mesh.test"), format!("{}.mesh.test", names_for("bob", 16))];
        assert_eq!(p.restrict_scope("alice@mesh.test", &mine), [mine[0].clone()]);
        assert_eq!(p.restrict_scope("bob@evil.example", &mine), Vec::<String>::new());
    }

    fn names_for(local: &str, n: usize) -> String {
        format!("id-{}", sha256_hex_prefix(local.as_bytes(), n))
    }

    #[test]
    fn http_ownership_follows_the_zone_rule() {
        let p = SubjectPolicy::new("mesh.test", &["alias.test"]);
        let id = format!("{}.mesh.test", names_for("alice", 16));
        let pk = format!("prekeys.{}.mesh.test", names_for("alice", 12));
        for name in [id.as_str(), pk.as_str(), "dmp.alice.mesh.test", "rotate.dmp.alice.mesh.test"]
        {
            let c = classify_name(name);
            assert!(p.owns(&c, "alice@mesh.test", None), "{name}");
            assert!(p.owns(&c, "alice@alias.test", None), "alias: {name}");
            assert!(!p.owns(&c, "alice@evil.example", None), "foreign: {name}");
            assert!(!p.owns(&c, "alice@sub.mesh.test", None), "subdomain: {name}");
            assert!(!p.owns(&c, "bob@mesh.test", None), "other user: {name}");
            assert!(p.is_local_part_name(name), "{name}");
            assert!(p.refusal("alice@evil.example", name).is_some());
            assert!(p.refusal("bob@mesh.test", name).is_none(), "local: the usual 401");
        }
        // Below a subdomain of the zone: no one's (not the zone's user names).
        let sub = format!("{}.sub.mesh.test", names_for("alice", 16));
        assert!(!p.owns(&classify_name(&sub), "alice@sub.mesh.test", None));
        // Outside the zone the reference rule is unchanged.
        let out = format!("{}.evil.example", names_for("alice", 16));
        assert!(p.owns(&classify_name(&out), "alice@evil.example", None));
        assert!(!p.owns(&classify_name(&out), "alice@mesh.test", None));
        for name in
            ["slot-1.mb-0123456789ab.mesh.test", "mesh.test", "x.mesh.test", "id-1.other.test"]
        {
            assert!(!p.is_local_part_name(name), "{name}");
        }
    }

    #[test]
    fn one_local_part_one_key() {
        let bound = [("alice@mesh.test", "aa"), ("bob@x.example", ""), ("carol@a.example", "cc")];
        let c = |s: &str, k: &str| binding_conflict(s, k, bound.iter().copied());
        assert_eq!(c("alice@mesh.test", "aa"), None, "same key re-registers");
        assert_eq!(c("alice@evil.example", "AA"), None, "same key, other domain");
        assert_eq!(c("alice@mesh.test", "bb"), Some(BindingConflict::SameSubject));
        assert_eq!(c("alice@evil.example", "bb"), Some(BindingConflict::SameLocalPart));
        assert_eq!(c("carol@mesh.test", "bb"), Some(BindingConflict::SameLocalPart), "vice versa");
        assert_eq!(c("bob@mesh.test", "bb"), None, "admin credentials do not bind");
        assert_eq!(c("dave@mesh.test", "bb"), None);
    }

    proptest::proptest! {
        /// Whatever a stored scope holds (wildcards anywhere, the apex, its ancestors, other
        /// users' id labels), after `restrict_scope` it covers no local-part name of the zone
        /// that is not the subject's own, and none at all for a foreign subject.
        #[test]
        fn restricted_scopes_never_reach_other_users_names(
            labels in proptest::collection::vec(
                proptest::collection::vec("(\\*|id-\\*|i\\*|\\*d-|id-[0-9a-f]{1,3}\\*|id-2bd806c97f0e|id-2bd806c97f0e00af|id-81b637d8fcd2|mb-\\*|x|prekeys|mesh|test|\\*\\*)", 1..5),
                1..6,
            ),
            victim_hex in "[0-9a-f]{16}",
            extra in proptest::option::of("(prekeys|rotate|x)"),
        ) {
            let p = SubjectPolicy::new("mesh.test", &["alias.test"]);
            let scope: Vec<String> = labels.iter().map(|l| l.join(".")).collect();
            let pre = extra.map(|e| format!("{e}.")).unwrap_or_default();
            // alice's own labels, bob's, and a random user's.
            let owners = [
                format!("{pre}id-2bd806c97f0e00af.mesh.test"),
                format!("{pre}id-2bd806c97f0e.mesh.test"),
                format!("{pre}id-81b637d8fcd2.mesh.test"),
                format!("{pre}id-{victim_hex}.mesh.test"),
                format!("{pre}id-{}.mesh.test", &victim_hex[..12]),
            ];
            for subject in ["alice@evil.example", "alice@sub.mesh.test"] {
                let r = p.restrict_scope(subject, &scope);
                for o in &owners {
                    proptest::prop_assert_eq!(coverage(&r, o), Coverage::None, "{} {:?} {}", subject, r, o);
                }
            }
            for subject in ["alice@mesh.test", "alice@alias.test"] {
                let r = p.restrict_scope(subject, &scope);
                for o in &owners[2..] {
                    if o.contains("id-2bd806c97f0e.") || o.contains("id-2bd806c97f0e00af.") {
                        continue; // the random hash happened to be alice's own
                    }
                    proptest::prop_assert_eq!(coverage(&r, o), Coverage::None, "{} {:?} {}", subject, r, o);
                }
            }
        }
    }

    #[test]
    fn glob_labels() {
        assert!(label_glob(b"chunk-*-*", b"chunk-0001-abc"));
        assert!(label_glob(b"chunk-*-*", b"chunk--"));
        assert!(!label_glob(b"chunk-*-*", b"chunk-0001"));
        assert!(label_glob(b"*", b""));
        assert!(label_glob(b"a*b*c", b"axxbyybc"));
        assert!(!label_glob(b"a*b", b"axxbc"));
    }
}
