//! The watch streams of `recv --watch`: one Server-Sent-Events stream of changed mailbox
//! names per node that can hold our mail records (the home node, and each claim provider,
//! where senders' claims arrive), each on its own thread, reconnecting with backoff.
//!
//! Nothing here reads a value: a stream only says "read now", and the receive loop reads
//! through DNS and verifies as it does when polling, which stays the fallback.
//!
//! A stream that goes silent (no event and no keep-alive for [`SILENT_AFTER`]; our node
//! sends a keep-alive at least every 15 s; `DNSMESH_WATCH_SILENT_SECS` overrides) counts as down: its thread is abandoned (it
//! exits when its blocked read ends, bounded by [`BODY_BACKSTOP`]) and a fresh one
//! connects. When a stream comes back after being down, the loop reads at once, since
//! changes named while it was away were missed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stream silent for this long is taken for dead (3× the node's longest keep-alive).
pub const SILENT_AFTER: Duration = Duration::from_secs(45);

/// [`SILENT_AFTER`], or `DNSMESH_WATCH_SILENT_SECS` when set (slow links, tests).
fn silent_after() -> Duration {
    std::env::var("DNSMESH_WATCH_SILENT_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(SILENT_AFTER, Duration::from_secs)
}

/// Longest a single stream connection is read before reconnecting, so a connection that
/// stalls without the peer closing it does not hold a thread for ever.
pub const BODY_BACKSTOP: Duration = Duration::from_secs(15 * 60);

/// At most this many streams (home node + claim providers).
pub const MAX_STREAMS: usize = 4;

/// What a stream thread reports.
enum News {
    /// The stream is in place (its opening comment arrived).
    Up,
    /// A keep-alive comment: the connection is alive.
    Alive,
    /// A mailbox record changed: read now.
    Changed,
    /// The stream is gone for now (reconnecting with backoff); polling carries on.
    Down(String),
    /// The node has no stream (404 and the like, e.g. a reference node): polling only.
    Unsupported(u16),
}

/// State of one stream, as the loop sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Connecting,
    Live,
    Down(String),
    Unsupported(u16),
}

struct Stream {
    url: String,
    state: State,
    last_heard: Instant,
    /// Generation of the thread that currently owns this stream; older threads exit.
    generation: Arc<AtomicU64>,
}

/// What [`Watches::wait`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A change was named (or a stream came back after missing changes): read now.
    Read,
    /// The poll interval passed.
    Poll,
}

/// The set of watch streams of one `recv --watch`.
pub struct Watches {
    streams: Vec<Stream>,
    silent_after: Duration,
    tx: Sender<(usize, u64, News)>,
    rx: Receiver<(usize, u64, News)>,
}

impl Watches {
    /// Start one stream per URL (deduplicated, at most [`MAX_STREAMS`]).
    pub fn start(urls: Vec<String>) -> Watches {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut w = Watches { streams: Vec::new(), silent_after: silent_after(), tx, rx };
        for url in urls {
            if w.streams.len() == MAX_STREAMS || w.streams.iter().any(|s| s.url == url) {
                continue;
            }
            w.streams.push(Stream {
                url,
                state: State::Connecting,
                last_heard: Instant::now(),
                generation: Arc::new(AtomicU64::new(0)),
            });
            w.spawn(w.streams.len() - 1);
        }
        w
    }

    fn spawn(&self, i: usize) {
        let s = &self.streams[i];
        let generation = s.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let (url, current, tx) = (s.url.clone(), s.generation.clone(), self.tx.clone());
        std::thread::spawn(move || run(url, i, generation, current, tx));
    }

    /// One line for the status display, e.g. `stream: live` or `streams: 1/2 live`.
    pub fn describe(&self) -> String {
        let describe = |s: &State| match s {
            State::Connecting => "stream: connecting".to_string(),
            State::Live => "stream: live".to_string(),
            State::Down(why) => {
                format!("stream down, polling: {}", why.chars().take(40).collect::<String>())
            }
            State::Unsupported(code) => format!("no stream (HTTP {code}), polling"),
        };
        match self.streams.as_slice() {
            [] => "polling".to_string(),
            [one] => describe(&one.state),
            all => {
                let live = all.iter().filter(|s| s.state == State::Live).count();
                if live == 0 {
                    format!("streams: 0/{} live, polling", all.len())
                } else {
                    format!("streams: {live}/{} live", all.len())
                }
            }
        }
    }

    /// Wait up to `wait` for a change named by any stream. `on_state` is called with the
    /// new description whenever it changes.
    pub fn wait(&mut self, wait: Duration, mut on_state: impl FnMut(&str)) -> Wake {
        let deadline = Instant::now() + wait;
        loop {
            let now = Instant::now();
            let Some(left) = deadline.checked_duration_since(now) else { return Wake::Poll };
            // Wake in time to notice a stream going silent.
            let watchdog = self
                .streams
                .iter()
                .filter(|s| s.state == State::Live)
                .map(|s| (s.last_heard + self.silent_after).saturating_duration_since(now))
                .min()
                .unwrap_or(left);
            let before = self.describe();
            let mut wake = None;
            match self.rx.recv_timeout(left.min(watchdog).max(Duration::from_millis(10))) {
                Ok((i, generation, news)) => {
                    if self.streams[i].generation.load(Ordering::SeqCst) == generation {
                        wake = self.note(i, news);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("Watches holds a sender"),
            }
            self.check_silence();
            let after = self.describe();
            if after != before {
                on_state(&after);
            }
            if let Some(w) = wake {
                // Several names often change together (a message's chunks, its claim):
                // take everything already queued into the same read.
                while let Ok((i, generation, news)) = self.rx.try_recv() {
                    if self.streams[i].generation.load(Ordering::SeqCst) == generation {
                        self.note(i, news);
                    }
                }
                return w;
            }
        }
    }

    fn note(&mut self, i: usize, news: News) -> Option<Wake> {
        let s = &mut self.streams[i];
        s.last_heard = Instant::now();
        match news {
            News::Up => {
                let missed = matches!(s.state, State::Down(_));
                s.state = State::Live;
                missed.then_some(Wake::Read)
            }
            News::Alive => None,
            News::Changed => {
                s.state = State::Live;
                Some(Wake::Read)
            }
            News::Down(why) => {
                s.state = State::Down(why);
                None
            }
            News::Unsupported(code) => {
                s.state = State::Unsupported(code);
                None
            }
        }
    }

    /// Replace every live stream that has been silent too long.
    fn check_silence(&mut self) {
        for i in 0..self.streams.len() {
            let s = &mut self.streams[i];
            if s.state == State::Live && s.last_heard.elapsed() >= self.silent_after {
                s.state = State::Down(format!("silent for {}s", self.silent_after.as_secs()));
                s.last_heard = Instant::now();
                self.spawn(i);
            }
        }
    }
}

/// The thread of one stream: keep it open (reconnecting with backoff up to a minute)
/// until the loop goes away, the node has no stream, or a newer thread took over.
fn run(
    url: String,
    i: usize,
    generation: u64,
    current: Arc<AtomicU64>,
    tx: Sender<(usize, u64, News)>,
) {
    let mine = || current.load(Ordering::SeqCst) == generation;
    let send = |news: News| mine() && tx.send((i, generation, news)).is_ok();
    let mut backoff = 1u64;
    loop {
        let mut up = false;
        let end = super::net::sse(&url, BODY_BACKSTOP, |line| {
            let news = match line {
                Some(_) => News::Changed,
                None if !up => News::Up,
                None => News::Alive,
            };
            if matches!(news, News::Up) {
                up = true;
            }
            send(news)
        });
        let why = match end {
            Ok(super::net::SseEnd::Refused(s)) if !matches!(s, 429 | 503) && s < 500 => {
                send(News::Unsupported(s));
                return;
            }
            Ok(super::net::SseEnd::Refused(s)) => format!("watch stream refused: HTTP {s}"),
            Ok(super::net::SseEnd::Closed) => "watch stream closed".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if up {
            backoff = 1;
        }
        if !send(News::Down(why)) {
            return;
        }
        std::thread::sleep(Duration::from_secs(backoff));
        backoff = (backoff * 2).min(60);
    }
}
