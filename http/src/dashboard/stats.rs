//! Request rates, percentiles and errors per route over a recent window, read from the node's
//! own request metrics (the `troupe_http_request_duration_seconds` histogram in its
//! exposition): the dashboard shows exactly what `/metrics` counts, and costs nothing on the
//! request path.
//!
//! The metrics are cumulative, so a window needs an earlier sample: [`RequestSampler`] keeps a
//! few, taken when a report is asked for (at most one a second, for a minute), and compares
//! the newest with the newest one at least [`WINDOW`] older (or the oldest it has, or the
//! node's start).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

// The node's clock: turmoil's under simulation.
use tokio::time::Instant;

use crate::views::{RequestStats, RouteStats};

/// The window rates and percentiles cover once the sampler has samples that old.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Samples closer together than this are not kept (the dashboard polls every second).
const SPACING: Duration = Duration::from_secs(1);
/// Samples older than this are dropped.
const KEEP: Duration = Duration::from_secs(60);
/// Most samples kept, whatever the clock does.
const MAX_SAMPLES: usize = 64;
/// Routes listed per report (labels are bounded already; this bounds the report).
const MAX_ROUTES: usize = 40;
/// The histogram the statistics come from, as the exposition names its series.
const HISTOGRAM: &str = "troupe_http_request_duration_seconds";
/// Routes left out of a node's total: the dashboard's own polling.
const OWN_PREFIX: &str = "/ui";

/// Cumulative counts of one route, summed over methods and statuses.
#[derive(Clone, Debug, Default, PartialEq)]
struct Counts {
    requests: u64,
    errors: u64,
    client_errors: u64,
    /// Cumulative bucket counts by upper bound. The key is the bound's bit pattern, which
    /// orders like the bound itself for the positive bounds (and `+Inf`) a histogram has.
    buckets: BTreeMap<u64, u64>,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.client_errors += other.client_errors;
        for (bound, count) in &other.buckets {
            *self.buckets.entry(*bound).or_default() += count;
        }
    }

    /// What happened between `base` and `self` (counters only grow; a smaller one counts 0).
    fn since(&self, base: Option<&Counts>) -> Counts {
        let empty = Counts::default();
        let base = base.unwrap_or(&empty);
        Counts {
            requests: self.requests.saturating_sub(base.requests),
            errors: self.errors.saturating_sub(base.errors),
            client_errors: self.client_errors.saturating_sub(base.client_errors),
            buckets: self
                .buckets
                .iter()
                .map(|(bound, count)| {
                    let before = base.buckets.get(bound).copied().unwrap_or(0);
                    (*bound, count.saturating_sub(before))
                })
                .collect(),
        }
    }

    /// The `q` quantile in seconds, interpolated inside its bucket as Prometheus'
    /// `histogram_quantile` does; the largest finite bound when it falls in the `+Inf` bucket.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.values().copied().max().unwrap_or(0);
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0_f64, 0_u64);
        for (bits, cumulative) in &self.buckets {
            let upper = f64::from_bits(*bits);
            if *cumulative as f64 >= rank {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let inside = (*cumulative - below) as f64;
                let fraction = if inside > 0.0 {
                    (rank - below as f64) / inside
                } else {
                    1.0
                };
                return Some(lower + (upper - lower) * fraction);
            }
            (lower, below) = (upper, *cumulative);
        }
        Some(lower)
    }

    fn stats(&self, route: String, seconds: f64) -> RouteStats {
        let millis = |q| {
            self.quantile(q)
                .map(|s| (s * 1000.0 * 1000.0).round() / 1000.0)
        };
        RouteStats {
            route,
            requests: self.requests,
            per_second: if seconds > 0.0 {
                self.requests as f64 / seconds
            } else {
                0.0
            },
            p50_ms: millis(0.5),
            p99_ms: millis(0.99),
            errors: self.errors,
            client_errors: self.client_errors,
        }
    }
}

/// Every route's cumulative counts at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    routes: BTreeMap<String, Counts>,
}

impl Sample {
    /// Reads the request histogram out of a node's exposition (every other line is ignored).
    fn parse(exposition: &str) -> Self {
        let mut sample = Sample::default();
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix(HISTOGRAM) else {
                continue;
            };
            let (series, rest) = match rest.split_once('{') {
                Some((series, rest)) => (series, rest),
                None => continue,
            };
            let Some((labels, value)) = rest.rsplit_once('}') else {
                continue;
            };
            let Some(value) = value.split_whitespace().next().and_then(parse_count) else {
                continue;
            };
            let labels = parse_labels(labels);
            let label = |name: &str| {
                labels
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            let Some(route) = label("route") else {
                continue;
            };
            let counts = sample.routes.entry(route.to_owned()).or_default();
            match series {
                "_count" => {
                    let status = label("status").and_then(|s| s.parse::<u16>().ok());
                    counts.requests += value;
                    match status {
                        Some(500..) => counts.errors += value,
                        Some(400..=499) => counts.client_errors += value,
                        _ => {}
                    }
                }
                "_bucket" => {
                    let Some(bound) = label("le").and_then(parse_bound) else {
                        continue;
                    };
                    *counts.buckets.entry(bound.to_bits()).or_default() += value;
                }
                _ => {}
            }
        }
        sample
    }
}

/// A count as the exposition writes it (an integer, or a float for some encoders).
fn parse_count(text: &str) -> Option<u64> {
    text.parse::<u64>()
        .ok()
        .or_else(|| text.parse::<f64>().ok().map(|v| v.max(0.0) as u64))
}

/// A bucket bound: positive, or `+Inf`.
fn parse_bound(text: &str) -> Option<f64> {
    let bound = match text {
        "+Inf" | "Inf" => f64::INFINITY,
        _ => text.parse::<f64>().ok()?,
    };
    (bound >= 0.0).then_some(bound)
}

/// `name="value",...` with the exposition's escapes (`\\`, `\"`, `\n`).
fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() || chars.next() != Some('"') {
            return labels;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                other => value.push(other),
            }
        }
        labels.push((name.trim().to_owned(), value));
    }
}

/// Recent samples of one node's request metrics; see the module doc.
#[derive(Debug)]
pub struct RequestSampler {
    started: Instant,
    samples: Mutex<VecDeque<(Instant, Sample)>>,
}

impl Default for RequestSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestSampler {
    /// A sampler whose first window starts now (with every counter at zero: the node's start).
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// The statistics of the window ending now, from the node's exposition.
    pub fn observe(&self, exposition: &str) -> RequestStats {
        self.observe_at(Instant::now(), Sample::parse(exposition))
    }

    fn observe_at(&self, now: Instant, sample: Sample) -> RequestStats {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        while samples
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > KEEP)
            || samples.len() >= MAX_SAMPLES
        {
            samples.pop_front();
        }
        let base = samples
            .iter()
            .rev()
            .find(|(at, _)| now.saturating_duration_since(*at) >= WINDOW)
            .or_else(|| samples.front())
            .filter(|(at, _)| *at < now);
        let stats = match base {
            Some((at, base)) => window(base, &sample, now.saturating_duration_since(*at)),
            None => window(
                &Sample::default(),
                &sample,
                now.saturating_duration_since(self.started),
            ),
        };
        let spaced = samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= SPACING);
        if spaced {
            samples.push_back((now, sample));
        }
        stats
    }
}

/// The statistics of what happened between `base` and `now`, `elapsed` apart.
fn window(base: &Sample, now: &Sample, elapsed: Duration) -> RequestStats {
    let seconds = elapsed.as_secs_f64();
    let mut total = Counts::default();
    let mut routes: Vec<RouteStats> = Vec::new();
    for (route, counts) in &now.routes {
        let delta = counts.since(base.routes.get(route));
        if delta.requests == 0 {
            continue;
        }
        if !route.starts_with(OWN_PREFIX) {
            total.add(&delta);
        }
        routes.push(delta.stats(route.clone(), seconds));
    }
    routes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(&b.route)));
    routes.truncate(MAX_ROUTES);
    RequestStats {
        window_ms: elapsed.as_millis() as u64,
        total: total.stats("all".into(), seconds),
        routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{HttpMetrics, RequestLabels};
    use prometheus_client::registry::Registry;

    /// A registry with the edge's real metric families, and a way to record into them.
    struct Node {
        registry: Registry,
        metrics: HttpMetrics,
    }

    impl Node {
        fn new() -> Self {
            let mut registry = Registry::default();
            let metrics = HttpMetrics::register(&mut registry);
            Self { registry, metrics }
        }

        fn serve(&self, route: &str, status: u16, seconds: f64, times: usize) {
            for _ in 0..times {
                let labels = RequestLabels {
                    route: route.into(),
                    method: "GET",
                    status,
                };
                self.metrics.record(labels, seconds);
            }
        }

        fn sample(&self) -> Sample {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("encode");
            Sample::parse(&out)
        }
    }

    fn route<'a>(stats: &'a RequestStats, name: &str) -> &'a RouteStats {
        stats
            .routes
            .iter()
            .find(|r| r.route == name)
            .unwrap_or_else(|| panic!("no route {name} in {stats:?}"))
    }

    #[test]
    fn the_exposition_of_the_edge_metrics_reads_back_as_counts_per_route() {
        let node = Node::new();
        node.serve("/api/user/{id}", 200, 0.002, 7);
        node.serve("/api/user/{id}", 404, 0.002, 2);
        node.serve("/api/user/{id}", 503, 0.002, 1);
        node.serve("/cluster", 200, 0.0005, 3);
        let sample = node.sample();
        let user = &sample.routes["/api/user/{id}"];
        assert_eq!((user.requests, user.client_errors, user.errors), (10, 2, 1));
        assert_eq!(sample.routes["/cluster"].requests, 3);
        assert_eq!(
            user.buckets.values().max(),
            Some(&10),
            "+Inf holds them all"
        );
    }

    #[test]
    fn rates_and_errors_cover_only_the_window_not_the_counts_before_it() {
        let node = Node::new();
        let sampler = RequestSampler::new();
        let t0 = Instant::now();
        node.serve("/jobs", 200, 0.001, 50);
        sampler.observe_at(t0, node.sample());
        node.serve("/jobs", 200, 0.001, 20);
        node.serve("/jobs", 500, 0.001, 5);
        let stats = sampler.observe_at(t0 + Duration::from_secs(5), node.sample());
        let jobs = route(&stats, "/jobs");
        assert_eq!((jobs.requests, jobs.errors), (25, 5));
        assert!((jobs.per_second - 5.0).abs() < 1e-9, "{jobs:?}");
        assert_eq!(stats.window_ms, 5_000);
    }

    #[test]
    fn the_window_starts_at_the_newest_sample_old_enough() {
        let node = Node::new();
        let sampler = RequestSampler::new();
        let t0 = Instant::now();
        for second in 0..=12 {
            node.serve("/jobs", 200, 0.001, 10);
            sampler.observe_at(t0 + Duration::from_secs(second), node.sample());
        }
        node.serve("/jobs", 200, 0.001, 10);
        let stats = sampler.observe_at(t0 + Duration::from_secs(13), node.sample());
        assert_eq!(stats.window_ms, WINDOW.as_millis() as u64);
        assert_eq!(route(&stats, "/jobs").requests, 100);
    }

    #[test]
    fn percentiles_fall_in_the_bucket_of_their_rank() {
        let node = Node::new();
        node.serve("/fast", 200, 0.0003, 98);
        node.serve("/fast", 200, 0.9, 2);
        let stats = window(&Sample::default(), &node.sample(), Duration::from_secs(1));
        let fast = route(&stats, "/fast");
        let (p50, p99) = (fast.p50_ms.expect("p50"), fast.p99_ms.expect("p99"));
        // 0.3 ms lies in the (0.2, 0.4] ms bucket; 900 ms in (819.2, 1638.4] ms.
        assert!((0.2..=0.4).contains(&p50), "p50 {p50}");
        assert!((819.2..=1638.4).contains(&p99), "p99 {p99}");
    }

    #[test]
    fn the_total_leaves_out_the_dashboards_own_requests_and_an_idle_route_is_not_listed() {
        let node = Node::new();
        node.serve("/ui/data", 200, 0.001, 30);
        node.serve("/readyz", 200, 0.001, 4);
        let before = node.sample();
        node.serve("/ui/data", 200, 0.001, 3);
        let stats = window(&before, &node.sample(), Duration::from_secs(3));
        assert_eq!(stats.total.requests, 0);
        assert_eq!(stats.total.p50_ms, None);
        assert_eq!(route(&stats, "/ui/data").requests, 3);
        assert!(stats.routes.iter().all(|r| r.route != "/readyz"));
    }

    #[test]
    fn samples_stay_bounded_however_often_a_report_is_asked_for() {
        let node = Node::new();
        let sampler = RequestSampler::new();
        let t0 = Instant::now();
        for tenth in 0..5_000 {
            sampler.observe_at(t0 + Duration::from_millis(tenth * 100), node.sample());
        }
        // One a second for the last minute, 500 s into the run.
        let kept = sampler.samples.lock().expect("lock").len();
        assert!((59..=61).contains(&kept), "{kept} samples kept");
    }

    #[test]
    fn label_values_with_escapes_are_read_whole() {
        let labels = parse_labels(r#"route="/a\"b\\c",method="GET",le="+Inf""#);
        assert_eq!(
            labels,
            vec![
                ("route".to_owned(), r#"/a"b\c"#.to_owned()),
                ("method".to_owned(), "GET".to_owned()),
                ("le".to_owned(), "+Inf".to_owned()),
            ]
        );
    }
}
