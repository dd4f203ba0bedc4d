//! Prometheus text metrics (GET /metrics): executions by status, their
//! latency, the admission queue and the zygotes. Counters live in memory
//! and start at zero with each process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::status::Status;

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_status: BTreeMap<Status, u64>,
    buckets: Vec<u64>,
    sum_s: f64,
    count: u64,
}

/// A gauge with one series per value of one label.
pub type Labeled<'a> = (&'a str, &'a str, &'a str, Vec<(String, f64)>);

impl Metrics {
    /// Record one finished request.
    pub fn observe(&self, status: Status, seconds: f64) {
        let mut m = self.inner.lock().unwrap();
        *m.by_status.entry(status).or_insert(0) += 1;
        if m.buckets.is_empty() {
            m.buckets = vec![0; BUCKETS.len()];
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                m.buckets[i] += 1;
            }
        }
        m.sum_s += seconds;
        m.count += 1;
    }

    /// The exposition text, with gauges supplied by the caller.
    /// `gauges`: (name, help, value), read at render time; `labeled`:
    /// (name, help, label, [(label value, value)]), one series per value.
    pub fn render(&self, gauges: &[(&str, &str, f64)], labeled: &[Labeled<'_>]) -> String {
        let m = self.inner.lock().unwrap();
        let mut out = String::new();
        out += "# HELP sluice_executions_total Requests to execute a classifier, by final status.\n";
        out += "# TYPE sluice_executions_total counter\n";
        for (status, n) in &m.by_status {
            out += &format!("sluice_executions_total{{status=\"{status}\"}} {n}\n");
        }
        out += "# HELP sluice_execution_seconds Time from request to verdict.\n";
        out += "# TYPE sluice_execution_seconds histogram\n";
        for (i, le) in BUCKETS.iter().enumerate() {
            let n = m.buckets.get(i).copied().unwrap_or(0);
            out += &format!("sluice_execution_seconds_bucket{{le=\"{le}\"}} {n}\n");
        }
        out += &format!("sluice_execution_seconds_bucket{{le=\"+Inf\"}} {}\n", m.count);
        out += &format!("sluice_execution_seconds_sum {}\n", m.sum_s);
        out += &format!("sluice_execution_seconds_count {}\n", m.count);
        for (name, help, value) in gauges {
            // Read at render time; a `_total` only grows (a counter).
            let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
            out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
        }
        for (name, help, label, series) in labeled {
            out += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n");
            for (v, value) in series {
                out += &format!("{name}{{{label}=\"{v}\"}} {value}\n");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::status::Status;

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = super::Metrics::default();
        m.observe(Status::Success, 0.02);
        m.observe(Status::Success, 0.2);
        m.observe(Status::Timeout, 40.0);
        let envs = vec![("default".to_string(), 1.0), ("legacy".to_string(), 0.0)];
        let text =
            m.render(&[("sluice_up", "Always 1.", 1.0)], &[("sluice_env_up", "Up.", "environment", envs)]);
        assert!(text.contains("sluice_env_up{environment=\"legacy\"} 0\n"), "{text}");
        assert!(text.contains("sluice_executions_total{status=\"success\"} 2\n"), "{text}");
        assert!(text.contains("sluice_execution_seconds_bucket{le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("sluice_execution_seconds_bucket{le=\"0.25\"} 2\n"), "{text}");
        assert!(text.contains("sluice_execution_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("sluice_up 1\n"), "{text}");
    }
}
